//! The stack's guest arguments: `ip=A.B.C.D/PREFIX` (default 10.0.0.2/24).

/// The default address.
pub const DEFAULT_IP: ([u8; 4], u8) = ([10, 0, 0, 2], 24);

/// Parses `A.B.C.D/PREFIX` (the prefix may be left out: /24).
pub fn parse_cidr(text: &str) -> Option<([u8; 4], u8)> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, p.parse::<u8>().ok().filter(|&p| (1..=32).contains(&p))?),
        None => (text, 24),
    };
    let mut out = [0u8; 4];
    let mut parts = addr.split('.');
    for byte in &mut out {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *byte = part.parse().ok()?;
    }
    if parts.next().is_some() || out == [0; 4] {
        return None;
    }
    Some((out, prefix))
}
