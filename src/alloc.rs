//! The process allocator's settings, and the one module allowed to use `unsafe`.
//!
//! The `tickgate` binary runs on mimalloc (`#[global_allocator]` in `main.rs`). Left at its
//! defaults, mimalloc v3 keeps freed pages committed for a purge delay of a second and only
//! purges them when the same thread frees or allocates again. A shard thread whose clients
//! all left does neither, so after a disconnect storm the gateway's RSS stayed at its peak
//! indefinitely. [`return_freed_memory_promptly`] sets the purge delay to zero: a page that
//! becomes empty is decommitted at once. Measured on the close-storm repro and the
//! 1,000-client load test: RSS returns to its pre-run level, at the cost of about twice the
//! minor page faults under churn and no measurable throughput.
//!
//! This is the only `unsafe` in the workspace: two calls into mimalloc's C API with plain
//! integer arguments (`mimalloc`'s safe wrapper exposes no option setter).

#![allow(unsafe_code)]

/// mimalloc v3's `mi_option_purge_delay` (`mi_option_e` in `mimalloc.h`; the Rust binding's
/// constant list predates v3). Checked by [`purge_delay_ms`] in the test below.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Makes mimalloc decommit freed pages at once. Call it first thing in `main`, before any
/// thread starts. Harmless when another allocator is in use (the option is then unused).
pub fn return_freed_memory_promptly() {
    // SAFETY: `mi_option_set` takes an option index and a value, touches no caller memory,
    // and is documented as callable at any time; 15 is `mi_option_purge_delay` in the
    // mimalloc version `libmimalloc-sys` builds (v3), and a delay of 0 is a valid value.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

/// mimalloc's purge delay in force, ms.
pub fn purge_delay_ms() -> std::os::raw::c_long {
    // SAFETY: as above: an option index in, an integer out, no memory shared.
    unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }
}

#[cfg(test)]
mod tests {
    /// The index is mimalloc's purge delay: its documented default is 1000 ms in v3 (an
    /// unset environment variable), and setting it reads back.
    #[test]
    fn option_index_is_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(super::purge_delay_ms(), 1000, "not mimalloc v3's purge_delay");
        }
        super::return_freed_memory_promptly();
        assert_eq!(super::purge_delay_ms(), 0);
    }
}
