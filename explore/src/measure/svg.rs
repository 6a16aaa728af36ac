//! Plain SVG charts for the benchmark presets: horizontal bars, groups of vertical
//! bars, and lines over a log2 axis.

use std::fmt::Write as _;

/// One bar: its label, its value, its fill colour.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub colour: &'static str,
}

impl Bar {
    pub fn new(label: impl Into<String>, value: f64, colour: &'static str) -> Bar {
        Bar {
            label: label.into(),
            value,
            colour,
        }
    }
}

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn peak(values: impl Iterator<Item = f64>) -> f64 {
    let p = values.filter(|v| v.is_finite()).fold(0.0, f64::max);
    if p > 0.0 {
        p
    } else {
        1.0
    }
}

/// Horizontal bars on a linear scale, each labelled on its left, its value on its right.
pub fn hbars(title: &str, bars: &[Bar], value: impl Fn(f64) -> String) -> String {
    let (width, left, bar_h, gap) = (900.0, 330.0, 22.0, 8.0);
    let height = 60.0 + bars.len() as f64 * (bar_h + gap);
    let top = peak(bars.iter().map(|b| b.value));
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"13\">\n\
         <text x=\"10\" y=\"22\" font-size=\"16\">{}</text>\n",
        esc(title)
    );
    for (i, b) in bars.iter().enumerate() {
        let y = 40.0 + i as f64 * (bar_h + gap);
        let w = ((width - left - 90.0) * b.value / top).max(1.0);
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n\
             <rect x=\"{left}\" y=\"{y}\" width=\"{w:.1}\" height=\"{bar_h}\" fill=\"{}\"/>\n\
             <text x=\"{:.1}\" y=\"{}\">{}</text>",
            left - 8.0,
            y + 16.0,
            esc(&b.label),
            b.colour,
            left + w + 6.0,
            y + 16.0,
            value(b.value)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Groups of vertical bars (each group named under it), value above each bar, bar
/// labels slanted below the axis.
pub fn grouped_bars(title: &str, y_label: &str, groups: &[(String, Vec<Bar>)]) -> String {
    let (bar_w, gap, group_gap, left, top, plot_h) = (34.0, 6.0, 40.0, 60.0, 50.0, 300.0);
    let bars = groups.iter().map(|(_, b)| b.len()).sum::<usize>() as f64;
    let width = left + bars * (bar_w + gap) + group_gap * groups.len() as f64 + 40.0;
    let height = top + plot_h + 170.0;
    let peak = peak(groups.iter().flat_map(|(_, b)| b.iter().map(|b| b.value)));
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <text x=\"10\" y=\"22\" font-size=\"16\">{}</text>\n\
         <line x1=\"{left}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"black\"/>\n\
         <text x=\"10\" y=\"{}\">{}</text>\n",
        esc(title),
        top + 10.0,
        esc(y_label),
        y = top + plot_h,
        x2 = width - 20.0,
    );
    let mut x = left + 10.0;
    for (name, items) in groups {
        let start = x;
        for b in items {
            let h = plot_h * b.value / peak;
            let y = top + plot_h - h;
            let (lx, ly) = (x + bar_w / 2.0, top + plot_h + 10.0);
            let _ = writeln!(
                out,
                "<rect x=\"{x}\" y=\"{y:.1}\" width=\"{bar_w}\" height=\"{:.1}\" fill=\"{}\"/>\n\
                 <text x=\"{lx}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{:.3}</text>\n\
                 <text x=\"{lx}\" y=\"{ly}\" transform=\"rotate(60 {lx} {ly})\" font-size=\"11\">{}</text>",
                h.max(1.0),
                b.colour,
                y - 4.0,
                b.value,
                esc(&b.label)
            );
            x += bar_w + gap;
        }
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\">{}</text>",
            (start + x) / 2.0,
            height - 10.0,
            esc(name)
        );
        x += group_gap;
    }
    out.push_str("</svg>\n");
    out
}

/// One line of a [`lines_log2`] chart: name, points (x, y), dashed or not.
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

const COLOURS: [&str; 8] = [
    "#888", "#c9a", "#a6c", "#1b7", "#27c", "#e62", "#444", "#b33",
];

/// Lines over a log2 x axis from `2^lo` to `2^hi`, x ticks labelled by `tick`.
pub fn lines_log2(
    title: &str,
    y_label: &str,
    (lo, hi): (f64, f64),
    ticks: &[f64],
    tick: impl Fn(f64) -> String,
    lines: &[Line],
) -> String {
    let (w, h, left, top, pw, ph) = (760.0, 420.0, 60.0, 40.0, 560.0, 300.0);
    let peak = peak(lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)));
    let xy = |x: f64, y: f64| {
        (
            left + pw * (x.log2() - lo) / (hi - lo),
            top + ph - ph * y / peak,
        )
    };
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <text x=\"10\" y=\"22\" font-size=\"16\">{}</text>\n\
         <line x1=\"{left}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <text x=\"10\" y=\"{}\">{}</text>\n",
        esc(title),
        top + 10.0,
        esc(y_label),
        b = top + ph,
        r = left + pw,
    );
    for &t in ticks {
        let (x, _) = xy(t, 0.0);
        let _ = writeln!(
            out,
            "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\">{}</text>",
            top + ph + 16.0,
            esc(&tick(t))
        );
    }
    for (i, l) in lines.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let dash = if l.dashed {
            " stroke-dasharray=\"5,4\""
        } else {
            ""
        };
        let mut pts = l.points.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let coords: Vec<String> = pts
            .iter()
            .map(|&(x, y)| {
                let (x, y) = xy(x, y);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = writeln!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>\n\
             <text x=\"{}\" y=\"{}\" fill=\"{colour}\">{}</text>",
            coords.join(" "),
            left + pw + 10.0,
            top + 14.0 + 16.0 * i as f64,
            esc(&l.name)
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_whole_svg_documents() {
        let bars = [Bar::new("a<b", 2.0, "#999"), Bar::new("c", 0.0, "#444")];
        let h = hbars("t", &bars, |v| format!("{v}"));
        assert!(h.starts_with("<svg") && h.ends_with("</svg>\n"));
        assert!(h.contains("a&lt;b"));
        let g = grouped_bars("t", "s", &[("g".into(), vec![Bar::new("x", 1.5, "#999")])]);
        assert_eq!(g.matches("<rect").count(), 1);
        let l = lines_log2(
            "t",
            "Gbit/s",
            (4.0, 20.0),
            &[16.0, 1024.0],
            |v| format!("{v}"),
            &[Line {
                name: "1 comp".into(),
                points: vec![(1024.0, 2.0), (16.0, 1.0)],
                dashed: true,
            }],
        );
        assert!(l.contains("stroke-dasharray"));
        assert!(l.contains("<polyline points=\"60.0,190.0"), "{l}");
    }
}
