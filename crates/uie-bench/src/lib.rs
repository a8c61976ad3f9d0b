//! Support shared by the benchmarks of this package: latency measurement, percentiles and the
//! benchmark input files ([`latency`]), and a timed ONNX Runtime run ([`ort`]).
//!
//! The benchmarks themselves are the binaries in `src/bin/` (driven by `scripts/bench*.sh`), the
//! criterion benches in `benches/`, and the ONNX Runtime and PyTorch sides in `python/`.

pub mod latency;
pub mod ort;
