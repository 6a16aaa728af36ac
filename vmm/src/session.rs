//! Debugging a run as the monitor drives it: `--gdb` (a GDB stub that waits before the
//! first instruction), `--gdb-on-crash` and `--core` (post-mortem: full speed until a
//! crash stops every compartment). The machinery lives in `debug`, `postmortem` and
//! `coredump`, behind the `gdb` cargo feature (on by default); a monitor built without
//! it links no gdbstub and refuses those options with a usage error.
//!
//! Both the stub and the post-mortem watcher tell the monitor thread how a session
//! ended through one [`Event`], so it handles each ending once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What the command line asked for.
#[derive(Clone, Debug, Default)]
pub struct DebugPlan {
    /// `--gdb`: serve GDB here and wait for it before the first instruction.
    pub gdb: Option<String>,
    /// `--gdb-on-crash`: wait for GDB here after a crash.
    pub gdb_on_crash: Option<String>,
    /// `--gdb-wait`: how long to wait for it (`None`: for ever).
    pub gdb_wait: Option<Duration>,
    /// `--core`: where the core files go.
    pub core_dir: Option<PathBuf>,
}

impl DebugPlan {
    /// True when any debugging was asked for.
    pub fn wanted(&self) -> bool {
        self.gdb.is_some() || self.post_mortem()
    }

    /// True when a crash must stop the run for post-mortem work.
    pub fn post_mortem(&self) -> bool {
        self.core_dir.is_some() || self.gdb_on_crash.is_some()
    }
}

/// What a debugging session tells the monitor thread.
#[derive(Debug)]
pub enum Event {
    /// GDB detached or the session could not go on: the run continues.
    Over,
    /// GDB killed the run.
    Killed,
    /// The core files written after a crash, in compartment order.
    Cores(Vec<PathBuf>),
}

/// Where a session's events go: straight onto the monitor thread's channel, in order
/// with the compartments' outcomes (the cores of a crash arrive before its report).
pub type Events = Arc<dyn Fn(Event) + Send + Sync>;

#[cfg(feature = "gdb")]
mod imp {
    use std::sync::Arc;

    use super::{DebugPlan, Event, Events};
    use crate::compartment::{Compartment, StopHook};
    use crate::debug::listen::{GdbListener, SocketFile};
    use crate::debug::stub::{self, SessionEnd};
    use crate::debug::Debugger;
    use crate::error::{Result, VmmError};
    use crate::image::Image;
    use crate::postmortem::{self, PostMortemEvent};

    /// The listeners, bound before any VM exists: an address that cannot be served is
    /// a usage error before anything else happens.
    pub struct Prepared {
        plan: DebugPlan,
        gdb: Option<GdbListener>,
        on_crash: Option<GdbListener>,
        sockets: Vec<SocketFile>,
    }

    /// A running session: its debugger is every vCPU's stop hook.
    pub struct Session {
        debugger: Option<Arc<Debugger>>,
        /// Whichever way the run ends, the socket files it created go with it.
        _sockets: Vec<SocketFile>,
    }

    pub fn prepare(plan: &DebugPlan, image: &Image) -> Result<Prepared> {
        let bind = |addr: &Option<String>| -> Result<Option<GdbListener>> {
            match addr.as_deref() {
                Some(addr) => {
                    // A session can outlast the image file: read all of it now.
                    image.file_bytes();
                    Ok(Some(GdbListener::bind(addr)?))
                }
                None => Ok(None),
            }
        };
        let gdb = bind(&plan.gdb)?;
        let on_crash = bind(&plan.gdb_on_crash)?;
        let sockets = gdb
            .iter()
            .chain(&on_crash)
            .filter_map(GdbListener::socket_file)
            .collect();
        Ok(Prepared {
            plan: plan.clone(),
            gdb,
            on_crash,
            sockets,
        })
    }

    impl Prepared {
        /// Creates the debugger over the compartments (before their vCPUs run) and
        /// starts the stub or the post-mortem watcher, which report to `events`.
        pub fn start(
            self,
            compartments: &[Compartment],
            names: &[String],
            image: &Image,
            events: Events,
        ) -> Result<Session> {
            if !self.plan.wanted() {
                return Ok(Session {
                    debugger: None,
                    _sockets: self.sockets,
                });
            }
            let new = if self.gdb.is_some() {
                Debugger::new
            } else {
                Debugger::on_crash
            };
            let dbg = Arc::new(new(
                names.to_vec(),
                compartments.iter().map(Compartment::memory).collect(),
                compartments.iter().map(|c| c.cr3).collect(),
                image.code(),
            )?);
            fn event_of(end: SessionEnd) -> Event {
                match end {
                    SessionEnd::Over => Event::Over,
                    SessionEnd::Killed => Event::Killed,
                }
            }
            if let Some(listener) = self.gdb {
                let events = events.clone();
                stub::serve_in_background(listener, dbg.clone(), move |end| {
                    events(event_of(end));
                })
                .map_err(VmmError::GdbThread)?;
            }
            if self.plan.post_mortem() {
                let watcher = postmortem::Watcher {
                    core_dir: self.plan.core_dir.clone(),
                    gdb: self.on_crash,
                    gdb_wait: self.plan.gdb_wait,
                    image: image.path.clone(),
                };
                postmortem::watch_in_background(watcher, dbg.clone(), move |e| {
                    events(match e {
                        PostMortemEvent::Cores(paths) => Event::Cores(paths),
                        PostMortemEvent::Gdb(end) => event_of(end),
                    });
                })
                .map_err(VmmError::GdbThread)?;
            }
            Ok(Session {
                debugger: Some(dbg),
                _sockets: self.sockets,
            })
        }
    }

    impl Session {
        /// The hook every vCPU loop checks (none without a debugger).
        pub fn hook(&self) -> Option<Arc<dyn StopHook + Send + Sync>> {
            self.debugger
                .clone()
                .map(|d| d as Arc<dyn StopHook + Send + Sync>)
        }

        /// True while a GDB client is attached: the stub is still telling it how the
        /// run ended, and the monitor waits for the session's event.
        pub fn in_session(&self) -> bool {
            self.debugger.as_ref().is_some_and(|d| d.in_session())
        }
    }
}

#[cfg(not(feature = "gdb"))]
mod imp {
    use std::sync::Arc;

    use super::{DebugPlan, Events};
    use crate::compartment::{Compartment, StopHook};
    use crate::error::{Result, VmmError};
    use crate::image::Image;

    pub struct Prepared;
    pub struct Session;

    pub fn prepare(plan: &DebugPlan, _image: &Image) -> Result<Prepared> {
        let option = if plan.gdb.is_some() {
            "--gdb"
        } else if plan.gdb_on_crash.is_some() {
            "--gdb-on-crash"
        } else if plan.core_dir.is_some() {
            "--core"
        } else {
            return Ok(Prepared);
        };
        Err(VmmError::Usage(format!(
            "{option}: this flexos-vmm was built without debugging (the `gdb` cargo feature); \
             build it with default features"
        )))
    }

    impl Prepared {
        pub fn start(
            self,
            _compartments: &[Compartment],
            _names: &[String],
            _image: &Image,
            _events: Events,
        ) -> Result<Session> {
            Ok(Session)
        }
    }

    impl Session {
        pub fn hook(&self) -> Option<Arc<dyn StopHook + Send + Sync>> {
            None
        }

        pub fn in_session(&self) -> bool {
            false
        }
    }
}

pub use imp::{prepare, Prepared, Session};

#[cfg(all(test, not(feature = "gdb")))]
mod tests {
    use super::*;

    #[test]
    fn without_the_feature_every_debugging_option_is_refused() {
        let image = crate::image::Image::from_bytes(
            std::path::Path::new("x.elf"),
            crate::image::ImageBytes::Owned(flexos_testkit::ElfBuilder::new().build()),
            u64::MAX,
        )
        .unwrap();
        let refused = |plan: DebugPlan| prepare(&plan, &image).err().unwrap().to_string();
        assert!(refused(DebugPlan {
            gdb: Some("g.sock".into()),
            ..DebugPlan::default()
        })
        .starts_with("--gdb: this flexos-vmm was built without debugging"));
        assert!(refused(DebugPlan {
            core_dir: Some("cores".into()),
            ..DebugPlan::default()
        })
        .starts_with("--core: "));
        assert!(prepare(&DebugPlan::default(), &image).is_ok());
    }
}
