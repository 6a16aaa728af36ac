// Nor may a pointer come back.
rpc_shm::interface! {
    pub mod leaky (id = 1) {
        fn leak() -> *const u8 = 0;
    }
}

fn main() {}
