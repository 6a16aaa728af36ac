//! A private network namespace for tests that need interfaces (taps, veths).

/// Runs `f` on a thread of its own inside a network namespace it creates, so the test
/// never sees or touches the host's interfaces; commands it starts (the monitor, `ip`,
/// clients) run there too, and the namespace goes away with the thread.
pub fn in_private_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: unshare only changes this thread's namespaces.
                let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
                assert_eq!(
                    rc,
                    0,
                    "unshare(CLONE_NEWNET) (the network tests run as root): {}",
                    std::io::Error::last_os_error()
                );
                f()
            })
            .join()
            .unwrap()
    })
}
