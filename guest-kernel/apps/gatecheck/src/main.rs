//! `gatecheck`: what gates do when something goes wrong. One scenario per run, named
//! by the guest argument:
//!
//! - `leak` (2 compartments): `app` puts a private heap object's ADDRESS into a `u64`
//!   (any integer is gate-safe, so the compiler cannot stop this) and passes it to
//!   `victim`, which dereferences it. Every compartment's heap lies at its own
//!   guest-physical window, so in victim's compartment the address is nothing of its
//!   own: the monitor stops the run with "violated isolation ... private memory of
//!   compartment 0 (app)", exit 70.
//! - `malicious` (3 compartments): `evil` writes hand-made slots straight into the ring
//!   toward `victim` (see [`evil`]); victim must answer each with the right error reply
//!   and keep serving `app`, a well-behaved caller in a third compartment, between the
//!   attacks. Prints one line per attack (from evil) and a summary; exit 0 when every
//!   reply and every well-behaved call was right, 1 otherwise.
//! - `peer-death` (2 compartments): `app` calls `victim.crash()`, which dereferences null
//!   in `crash_in_callee` while app waits for the reply: the run ends with victim's
//!   crash report and exit 70.
//! - `forge-reply`, `read-buffer`, `set-dead`, `write-header`, `write-state` (3
//!   compartments): app calls victim (so their channel is in use, with a secret in a
//!   buffer app allocated for victim), then asks evil to reach for shared memory that
//!   is not evil's (see [`evil::Intrusion`]). The monitor must stop evil with an
//!   isolation violation naming what it touched (exit 70); if evil gets through, app
//!   prints what it got and exits 1.
//!
//! Bad arguments, or a placement a scenario cannot use, exit 2.

#![no_std]
#![no_main]

extern crate alloc;

mod evil;
mod victim;

use alloc::boxed::Box;

use flexos_kernel::components::compartment_of;
use flexos_kernel::gate::{self, router};
use flexos_kernel::rpc::{self, GateError};
use flexos_kernel::{Args, println};

use evil::{Attack, EVIL_SERVER, Intrusion, RawReply, evil as evil_iface};
use victim::{VICTIM_SERVER, victim as victim_iface};

flexos_kernel::main!(main);

flexos_kernel::components! {
    components: [APP = "app", VICTIM = "victim", EVIL = "evil"],
    splits: [
        [("all", ["app", "victim", "evil"])],
        [("app", ["app", "evil"]), ("victim", ["victim"])],
        [("app", ["app"]), ("evil", ["evil"]), ("victim", ["victim"])],
    ],
}

flexos_kernel::servers! {
    VICTIM => victim_iface(VICTIM_SERVER),
    EVIL => evil_iface(EVIL_SERVER),
}

const SCENARIOS: &str = "leak|malicious|peer-death|forge-reply|read-buffer|set-dead|write-header|write-state|print-channel";

/// Exit code for bad arguments or an unusable placement.
const EXIT_USAGE: i32 = 2;
/// Exit code for a scenario that saw something it should not have.
const EXIT_WRONG: i32 = 1;

fn main(args: &Args) -> i32 {
    let mut it = args.iter();
    let (Some(scenario), None) = (it.next(), it.next()) else {
        println!("usage: gatecheck {SCENARIOS}");
        return EXIT_USAGE;
    };
    match scenario {
        "leak" => leak(),
        "malicious" => malicious(),
        "peer-death" => peer_death(),
        "forge-reply" => intrude(Intrusion::ForgeReply),
        "read-buffer" => intrude(Intrusion::ReadBuffer),
        "set-dead" => intrude(Intrusion::SetDead),
        "write-header" => intrude(Intrusion::WriteHeader),
        "write-state" => intrude(Intrusion::WriteState),
        "print-channel" => intrude(Intrusion::PrintChannel),
        other => {
            println!("gatecheck: unknown scenario '{other}' (want {SCENARIOS})");
            EXIT_USAGE
        }
    }
}

fn victim() -> victim_iface::Client<'static, victim::Victim, flexos_kernel::gate::GateRouter> {
    victim_iface::Client::new(router(), VICTIM, &VICTIM_SERVER.0)
}

/// Passes a private pointer through a gate as an integer.
fn leak() -> i32 {
    let secret = Box::new(0x5EC2_E7ED_u64);
    let addr = &raw const *secret as u64;
    println!(
        "gatecheck: leak: app passes the address {addr:#x} of a private heap object to victim (compartment {})",
        compartment_of(VICTIM)
    );
    match victim().read_at(addr) {
        Ok(v) => {
            println!("gatecheck: leak: victim read {v:#x}: it shares app's compartment");
            0
        }
        Err(e) => {
            println!("gatecheck: leak: the call failed: {e}");
            EXIT_WRONG
        }
    }
}

/// Are app, evil and victim in three compartments? Says so if not.
fn three_compartments(scenario: &str) -> bool {
    let (app, evil_at, victim_at) = (
        compartment_of(APP),
        compartment_of(EVIL),
        compartment_of(VICTIM),
    );
    let apart = app != evil_at && evil_at != victim_at && app != victim_at;
    if !apart {
        println!(
            "gatecheck: {scenario} needs app, evil and victim in three compartments (try --compartments 3)"
        );
    }
    apart
}

/// Lets evil reach for the channel between app and victim, or the monitor's pages.
fn intrude(which: Intrusion) -> i32 {
    if !three_compartments("this scenario") {
        return EXIT_USAGE;
    }
    let victim = victim();
    let evil = evil_iface::Client::new(router(), EVIL, &EVIL_SERVER.0);
    // The channel app <-> victim in use: a call, and a secret in a buffer for victim.
    let secret = 0x5EC2_E7ED_u64;
    let Some(buf) = gate::shared_alloc(VICTIM, 8) else {
        println!("gatecheck: cannot allocate a shared buffer for victim");
        return EXIT_WRONG;
    };
    let written = gate::bytes(buf).and_then(|b| b.write(0, &secret.to_le_bytes()));
    if victim.add(1, 2) != Ok(3) || written.is_err() || victim.measure(buf) != Ok(8) {
        println!("gatecheck: app cannot use its channel to victim");
        return EXIT_WRONG;
    }
    println!("gatecheck: app asks evil to intrude: {which:?}");
    match evil.intrude(which, rpc::GateSafe::to_word(buf)) {
        // The monitor ends the run with evil's report; this only runs if app sees
        // evil's dead flag first.
        Err(GateError::PeerDead) => {
            println!("gatecheck: evil is dead");
            3
        }
        got => {
            println!(
                "gatecheck: evil got through: {got:?}; app's next call to victim: {:?}",
                victim.add(1, 2)
            );
            EXIT_WRONG
        }
    }
}

/// Lets evil attack victim's ring while app keeps calling victim.
fn malicious() -> i32 {
    if !three_compartments("malicious") {
        return EXIT_USAGE;
    }
    let victim = victim();
    let evil = evil_iface::Client::new(router(), EVIL, &EVIL_SERVER.0);

    let mut right = 0;
    let (mut errors, mut oks) = (0, 0);
    let mut served = 0;
    for (k, attack) in Attack::ALL.into_iter().enumerate() {
        let got = match evil.attack(attack) {
            Ok(word) => RawReply::from_word(word),
            Err(e) => {
                println!("gatecheck: malicious: calling evil failed: {e}");
                return EXIT_WRONG;
            }
        };
        match got {
            RawReply::Err(_) => errors += 1,
            RawReply::Ok(_) => oks += 1,
            _ => {}
        }
        if got == attack.expected() {
            right += 1;
        } else {
            println!(
                "gatecheck: malicious: {}: got {got}, want {}",
                attack.describe(),
                attack.expected()
            );
        }
        // The well-behaved caller, between every two attacks.
        let k = k as u64;
        match victim.add(k, 1000) {
            Ok(sum) if sum == k + 1000 => served += 1,
            Ok(sum) => println!("gatecheck: malicious: victim.add({k}, 1000) = {sum}"),
            Err(e) => println!("gatecheck: malicious: victim.add({k}, 1000) failed: {e}"),
        }
    }
    let n = Attack::ALL.len();
    println!(
        "gatecheck: malicious: {right} of {n} hand-made requests answered as expected \
         ({errors} error replies, {oks} ok); victim served {served} of {n} well-behaved calls from app"
    );
    if right == n && served == n {
        0
    } else {
        EXIT_WRONG
    }
}

/// Calls a callee that crashes while we wait.
fn peer_death() -> i32 {
    println!(
        "gatecheck: peer-death: calling victim.crash() in compartment {}",
        compartment_of(VICTIM)
    );
    match victim().crash() {
        Ok(v) => {
            println!("gatecheck: peer-death: victim.crash() returned {v}");
            EXIT_WRONG
        }
        // The monitor ends the run with victim's report as soon as it crashes; this
        // only runs if we see the dead flag first.
        Err(GateError::PeerDead) => {
            println!("gatecheck: peer-death: victim is dead");
            3
        }
        Err(e) => {
            println!("gatecheck: peer-death: the call failed: {e}");
            EXIT_WRONG
        }
    }
}
