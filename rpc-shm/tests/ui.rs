//! Compile-fail tests: a type that is not `GateSafe` in an `interface!` is rejected,
//! and the error says so (the expected messages are in tests/ui/*.stderr).

#[test]
fn non_gate_safe_types_are_rejected() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
