//! `--device cpu|cuda[:N]`: which burn backend a stage trains and samples on.

use std::fmt;
use std::str::FromStr;

/// A compute device named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// burn's Flex backend: pure Rust, SIMD, all cores.
    #[default]
    Cpu,
    /// burn's CUDA backend on GPU N (needs the `cuda` cargo feature).
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("`{s}` is not a device (expected cpu, cuda or cuda:N)")),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Runs `$body` with `B` bound to the autodiff backend of `$spec` and
/// `device` to its device. Without the `cuda` feature, asking for CUDA is an
/// error that says how to get it.
#[macro_export]
macro_rules! with_backend {
    ($spec:expr, |$b:ident, $device:ident| $body:expr) => {{
        match $spec {
            $crate::device::DeviceSpec::Cpu => {
                type $b = burn::backend::Autodiff<burn::backend::Flex>;
                let $device = burn::backend::flex::FlexDevice::default();
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::device::DeviceSpec::Cuda(n) => {
                type $b = burn::backend::Autodiff<burn::backend::Cuda>;
                let $device = burn::backend::cuda::CudaDevice::new(n);
                $body
            }
            #[cfg(not(feature = "cuda"))]
            $crate::device::DeviceSpec::Cuda(_) => Err(anyhow::anyhow!(
                "--device {}: this didact was built without CUDA; rebuild with `cargo build --release --features cuda`",
                $spec
            )),
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<DeviceSpec>(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:3".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(3)));
        assert!(
            "gpu"
                .parse::<DeviceSpec>()
                .unwrap_err()
                .contains("`gpu` is not a device")
        );
    }
}
