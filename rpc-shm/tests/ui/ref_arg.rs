// A reference into private memory must not cross a gate.
rpc_shm::interface! {
    pub mod leaky (id = 1) {
        fn peek(p: &u64) -> u64 = 0;
    }
}

fn main() {}
