// A raw pointer must not cross a gate.
rpc_shm::interface! {
    pub mod leaky (id = 1) {
        fn peek(p: *const u8) -> u64 = 0;
    }
}

fn main() {}
