//! Components and their placement.
//!
//! An image declares its components and its default split for each compartment count
//! with [`components!`](crate::components); the macro emits the
//! [`ComponentTable`](flexos_abi::ComponentTable) into the ELF section the monitor reads
//! (`.flexos.components`), and a `u16` constant per component for gate clients. At run
//! time [`compartment_of`] and [`is_local`] answer from the placement the monitor wrote
//! into the boot info.
//!
//! Component 0 is the image's entry component: the compartment hosting it runs the
//! app's `main`; every other compartment serves gate calls.

use flexos_abi::{ComponentTable, MAX_COMPARTMENTS, MAX_COMPONENTS, MAX_SPLITS, Split, name};

use crate::boot_info;

// rpc-shm defines the limit (the shared region is laid out for it); the abi crate, which
// depends on nothing, repeats it as the width of the component table's splits.
const _: () = assert!(MAX_COMPARTMENTS == rpc_shm::MAX_COMPARTMENTS);

/// Component id of the entry component (its compartment runs `main`).
pub const ENTRY_COMPONENT: u16 = 0;

/// The compartment hosting `component` in this run.
///
/// # Panics
///
/// If `component` is not one the image declared.
pub fn compartment_of(component: u16) -> u32 {
    let boot = boot_info();
    assert!(
        (component as u32) < boot.component_count,
        "unknown component {component}"
    );
    boot.placement[component as usize] as u32
}

/// True when `component` runs in this compartment.
pub fn is_local(component: u16) -> bool {
    compartment_of(component) == boot_info().compartment_id
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The index of `name` in `names`; a compile error (const panic) if it is missing.
pub const fn index_of(names: &[&str], name: &str) -> usize {
    let mut i = 0;
    while i < names.len() {
        if same(names[i], name) {
            return i;
        }
        i += 1;
    }
    panic!("a split names a component the image does not declare");
}

/// One compartment of a default split: its name and the components it hosts.
pub type SplitCompartment<'a> = (&'a str, &'a [&'a str]);

/// Builds the table at compile time from component names and splits (each split a
/// list of compartments). Every check is a const panic, so a bad declaration does not
/// build; the monitor validates the table again anyway.
pub const fn build_table(
    components: &[&str],
    splits: &[&[SplitCompartment<'_>]],
) -> ComponentTable {
    assert!(
        !components.is_empty() && components.len() <= MAX_COMPONENTS,
        "an image declares 1..=32 components"
    );
    assert!(splits.len() <= MAX_SPLITS, "at most 8 default splits");
    let mut table = ComponentTable::EMPTY;
    table.component_count = components.len() as u32;
    table.split_count = splits.len() as u32;
    let mut i = 0;
    while i < components.len() {
        table.components[i] = name(components[i]);
        i += 1;
    }
    let mut s = 0;
    while s < splits.len() {
        let split = splits[s];
        assert!(
            !split.is_empty() && split.len() <= MAX_COMPARTMENTS,
            "a split has 1..=16 compartments"
        );
        let mut out = Split::EMPTY;
        out.compartments = split.len() as u32;
        let mut placed = [false; MAX_COMPONENTS];
        let mut c = 0;
        while c < split.len() {
            let (cname, members) = split[c];
            out.names[c] = name(cname);
            let mut m = 0;
            while m < members.len() {
                let idx = index_of(components, members[m]);
                assert!(!placed[idx], "a split places a component twice");
                placed[idx] = true;
                out.placement[idx] = c as u8;
                m += 1;
            }
            c += 1;
        }
        let mut k = 0;
        while k < components.len() {
            assert!(placed[k], "a split leaves a component unplaced");
            k += 1;
        }
        table.splits[s] = out;
        s += 1;
    }
    table
}

/// Declares the image's components and default splits.
///
/// ```ignore
/// flexos_kernel::components! {
///     components: [BENCH = "bench", CALLEE = "callee"],
///     splits: [
///         [("all", ["bench", "callee"])],
///         [("bench", ["bench"]), ("callee", ["callee"])],
///     ],
/// }
/// ```
///
/// The first component is the entry component. Each `NAME = "name"` becomes a
/// `pub const NAME: u16` component id.
#[macro_export]
macro_rules! components {
    (
        components: [$($id:ident = $name:literal),+ $(,)?],
        splits: [$([$(($cname:literal, [$($member:literal),* $(,)?])),+ $(,)?]),+ $(,)?] $(,)?
    ) => {
        const __FLEXOS_COMPONENT_NAMES: &[&str] = &[$($name),+];
        $(
            #[allow(dead_code)]
            pub const $id: u16 =
                $crate::components::index_of(__FLEXOS_COMPONENT_NAMES, $name) as u16;
        )+
        #[used]
        #[unsafe(link_section = ".flexos.components")]
        static __FLEXOS_COMPONENT_TABLE: $crate::abi::ComponentTable =
            $crate::components::build_table(
                __FLEXOS_COMPONENT_NAMES,
                &[$(&[$(($cname, &[$($member),*])),+]),+],
            );
    };
}
