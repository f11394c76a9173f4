//! Allocator settings for training. Every step frees and allocates the same
//! large activation and gradient buffers (megabytes each). glibc's malloc
//! serves such blocks with fresh `mmap`s, or returns freed heap memory to
//! the OS, so the next step page-faults its memory back in, zero-filled:
//! about a tenth of a training step in a profile. Keeping freed memory in
//! the heap instead made training steps about 20% faster on the benchmark
//! (`just bench`, 2 cores); the cost is that the process keeps its peak
//! memory until it exits.

/// Serves blocks up to 32 MiB from the heap and never trims it. A no-op
/// where the C library is not glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc's `mallopt` parameters (malloc.h).
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: `mallopt` only changes malloc's tuning parameters, and is
        // called before the allocations it affects; both values are in the
        // ranges glibc documents (the mmap threshold's maximum is 32 MiB on
        // 64-bit targets).
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}
