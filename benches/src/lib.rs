//! Benchmark support crate; the benchmarks live in benches/benches/.
