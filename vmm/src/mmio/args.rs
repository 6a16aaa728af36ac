//! The command line's device options, `--disk PATH[,readonly]` and `--net
//! tap=NAME[,mac=MAC]`, parsed and checked before anything is opened.

use std::path::PathBuf;

/// `--disk PATH[,readonly]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskArg {
    pub path: PathBuf,
    pub readonly: bool,
}

/// Parses `--disk`'s value. Text after the last comma is a flag, so a path that holds a
/// comma is refused rather than guessed at.
pub fn parse_disk_arg(value: &str) -> std::result::Result<DiskArg, String> {
    let (path, readonly) = match value.rsplit_once(',') {
        Some((path, "readonly")) => (path, true),
        Some((_, flag)) => {
            return Err(format!(
                "unknown flag {flag:?}; the only flag is `readonly` (PATH[,readonly])"
            ))
        }
        None => (value, false),
    };
    if path.is_empty() {
        return Err("empty path; give PATH[,readonly]".into());
    }
    Ok(DiskArg {
        path: PathBuf::from(path),
        readonly,
    })
}

/// `--net tap=NAME[,mac=MAC]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetArg {
    /// An existing tap interface of this network namespace.
    pub tap: String,
    pub mac: [u8; 6],
}

/// The guest's MAC address unless `--net` gives one.
pub const DEFAULT_MAC: [u8; 6] = devices::net::DEFAULT_MAC;

/// Parses `--net`'s value: comma-separated `key=value` pairs, `tap` required, `mac`
/// optional (six hex bytes separated by `:`, unicast).
pub fn parse_net_arg(value: &str) -> std::result::Result<NetArg, String> {
    const FORM: &str = "give tap=NAME[,mac=MAC]";
    let mut tap = None;
    let mut mac = None;
    for pair in value.split(',') {
        let Some((key, val)) = pair.split_once('=') else {
            return Err(format!("{pair:?} is not key=value; {FORM}"));
        };
        let slot_taken = match key {
            "tap" => tap.replace(val).is_some(),
            "mac" => mac.replace(parse_mac(val)?).is_some(),
            _ => return Err(format!("unknown key {key:?}; {FORM}")),
        };
        if slot_taken {
            return Err(format!("{key} given twice; {FORM}"));
        }
    }
    let Some(tap) = tap else {
        return Err(format!("no tap name; {FORM}"));
    };
    devices::net::tap::check_name(tap).map_err(|e| e.to_string())?;
    Ok(NetArg {
        tap: tap.to_owned(),
        mac: mac.unwrap_or(DEFAULT_MAC),
    })
}

/// A unicast MAC address written as six `:`-separated hex bytes.
fn parse_mac(text: &str) -> std::result::Result<[u8; 6], String> {
    let bad = || format!("bad MAC address {text:?}; give six hex bytes such as 52:54:00:12:34:56");
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next().ok_or_else(bad)?;
        if part.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    if mac[0] & 1 != 0 {
        return Err(format!(
            "MAC address {text} is a multicast address; the guest needs a unicast one"
        ));
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_flag_is_readonly_or_nothing() {
        let ok = |s: &str| parse_disk_arg(s).unwrap();
        assert_eq!(
            ok("d.img"),
            DiskArg {
                path: "d.img".into(),
                readonly: false
            }
        );
        assert_eq!(
            ok("/x/d.img,readonly"),
            DiskArg {
                path: "/x/d.img".into(),
                readonly: true
            }
        );
        assert!(parse_disk_arg("d.img,rw").unwrap_err().contains("\"rw\""));
        assert!(parse_disk_arg("d.img,").is_err());
        assert!(parse_disk_arg(",readonly").is_err());
        assert!(parse_disk_arg("").is_err());
    }

    #[test]
    fn net_takes_a_tap_name_and_an_optional_mac() {
        let ok = |s: &str| parse_net_arg(s).unwrap();
        assert_eq!(
            ok("tap=flx0"),
            NetArg {
                tap: "flx0".into(),
                mac: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]
            }
        );
        assert_eq!(
            ok("mac=02:AB:cd:00:00:01,tap=t"),
            NetArg {
                tap: "t".into(),
                mac: [2, 0xab, 0xcd, 0, 0, 1]
            }
        );
        let err = |s: &str| parse_net_arg(s).unwrap_err();
        assert_eq!(
            err("tap=t,speed=10"),
            "unknown key \"speed\"; give tap=NAME[,mac=MAC]"
        );
        assert_eq!(
            err("flx0"),
            "\"flx0\" is not key=value; give tap=NAME[,mac=MAC]"
        );
        assert_eq!(
            err("mac=02:00:00:00:00:01"),
            "no tap name; give tap=NAME[,mac=MAC]"
        );
        assert_eq!(
            err("tap=a,tap=b"),
            "tap given twice; give tap=NAME[,mac=MAC]"
        );
        assert_eq!(
            err("tap="),
            "tap name \"\" is not an interface name: it is empty"
        );
        assert!(err("tap=a-very-long-tap-name").contains("longer than 15 bytes"));
        for mac in [
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "2:0:0:0:0:1",
            "zz:00:00:00:00:01",
            "",
        ] {
            assert!(
                err(&format!("tap=t,mac={mac}")).starts_with("bad MAC address"),
                "{mac:?}"
            );
        }
        assert_eq!(
            err("tap=t,mac=01:00:5e:00:00:01"),
            "MAC address 01:00:5e:00:00:01 is a multicast address; the guest needs a unicast one"
        );
    }
}
