//! The kernel stack size (`THREAD_SIZE`) per architecture, page size and kernel configuration,
//! plus the thin reader of the running kernel's configuration it is computed from.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::arch::{ArchError, KernelArch};

/// The running kernel's configuration, when built with `CONFIG_IKCONFIG_PROC`.
pub const PROC_CONFIG_GZ: &str = "/proc/config.gz";
/// Distributions install the configuration as `/boot/config-<release>`.
const BOOT_CONFIG_PREFIX: &str = "/boot/config-";
const OSRELEASE: &str = "/proc/sys/kernel/osrelease";
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A kernel `.config`: the options set, each with its value (`y`, `m`, a number, a string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelConfig {
    origin: String,
    options: HashMap<String, String>,
}

impl KernelConfig {
    /// Parses `.config` text (`CONFIG_X=value` lines; comments and `# ... is not set` are
    /// skipped). `origin` names it in messages.
    pub fn parse(text: &str, origin: &str) -> Self {
        let options = text
            .lines()
            .map(str::trim)
            .filter(|line| line.starts_with("CONFIG_"))
            .filter_map(|line| line.split_once('='))
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        KernelConfig {
            origin: origin.to_string(),
            options,
        }
    }

    /// The running kernel's configuration: `/proc/config.gz`, else
    /// `/boot/config-<release>`; `None` when neither is readable.
    pub fn read_running() -> Option<Self> {
        let mut candidates = vec![PathBuf::from(PROC_CONFIG_GZ)];
        if let Ok(release) = std::fs::read_to_string(OSRELEASE) {
            candidates.push(PathBuf::from(format!(
                "{BOOT_CONFIG_PREFIX}{}",
                release.trim()
            )));
        }
        candidates
            .iter()
            .find_map(|path| Self::read_file(path).ok())
    }

    /// Reads a configuration file, plain or gzip-compressed (told by its first bytes).
    pub fn read_file(path: &Path) -> std::io::Result<Self> {
        let bytes = std::fs::read(path)?;
        let text = if bytes.starts_with(&GZIP_MAGIC) {
            let mut text = String::new();
            flate2::read::GzDecoder::new(bytes.as_slice()).read_to_string(&mut text)?;
            text
        } else {
            String::from_utf8(bytes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
        };
        Ok(Self::parse(&text, &path.display().to_string()))
    }

    /// Where the configuration came from (a path, or what the caller named it).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The value of `option` (full name, e.g. `CONFIG_KASAN`), if set.
    pub fn value(&self, option: &str) -> Option<&str> {
        self.options.get(option).map(String::as_str)
    }

    /// Whether the boolean `option` is `y`.
    pub fn is_enabled(&self, option: &str) -> bool {
        self.value(option) == Some("y")
    }
}

/// Smallest and largest page sizes accepted (4 KiB .. 1 MiB; arm64 goes up to 64 KiB).
const MIN_PAGE_SHIFT: u32 = 12;
const MAX_PAGE_SHIFT: u32 = 20;
/// riscv64's default `CONFIG_THREAD_SIZE_ORDER`, and its Kconfig range.
const RISCV_DEFAULT_THREAD_ORDER: u32 = 2;
const RISCV_MAX_THREAD_ORDER: u32 = 4;

/// `THREAD_SIZE`, the size (and minimum alignment) of a task's kernel stack.
///
/// Rules, from the kernel headers (KASAN doubles stacks where noted):
/// - x86-64, `arch/x86/include/asm/page_64_types.h`:
///   `PAGE_SIZE << (2 + KASAN)`, KASAN = `CONFIG_KASAN`. 16 KiB, 32 KiB with KASAN.
/// - arm64, `arch/arm64/include/asm/memory.h`: `MIN_THREAD_SHIFT = 14 + KASAN`, KASAN =
///   `CONFIG_KASAN_GENERIC` or `CONFIG_KASAN_SW_TAGS` (not `HW_TAGS`); with
///   `CONFIG_VMAP_STACK` (default, mandatory since 6.17) `THREAD_SHIFT` is at least
///   `PAGE_SHIFT`, so 64 KiB pages give 64 KiB stacks; `THREAD_SIZE = 1 << THREAD_SHIFT`.
/// - riscv64, `arch/riscv/include/asm/thread_info.h`:
///   `PAGE_SIZE << (CONFIG_THREAD_SIZE_ORDER + KASAN)`, KASAN = `CONFIG_KASAN`, the order
///   2 by default (and before the option existed). Caveat: from the option's introduction
///   until "riscv: Fix kernel stack size when KASAN is enabled" (6.12, backported to
///   stable), Kconfig folded KASAN into the order instead (default 3 with KASAN), so such
///   KASAN kernels have half the size computed here.
///
/// Without a configuration (`None`) the defaults are assumed: no KASAN, `VMAP_STACK` on
/// arm64, order 2 on riscv64. On a KASAN kernel that underestimates the stack, and the
/// upper half of each task stack is then taken for an interrupt stack.
pub fn thread_size(
    arch: KernelArch,
    page_size: u64,
    config: Option<&KernelConfig>,
) -> Result<u32, ArchError> {
    let page_shift = page_size.trailing_zeros();
    if !page_size.is_power_of_two() || !(MIN_PAGE_SHIFT..=MAX_PAGE_SHIFT).contains(&page_shift) {
        return Err(ArchError::PageSize { page_size });
    }
    let enabled = |option: &str| config.is_some_and(|c| c.is_enabled(option));
    let kasan = |options: &[&str]| u32::from(options.iter().any(|o| enabled(o)));
    let shift = match arch {
        KernelArch::X86_64 => page_shift + 2 + kasan(&["CONFIG_KASAN"]),
        KernelArch::Arm64 => {
            let min_thread_shift = 14 + kasan(&["CONFIG_KASAN_GENERIC", "CONFIG_KASAN_SW_TAGS"]);
            let vmap_stack = config.is_none_or(|c| c.is_enabled("CONFIG_VMAP_STACK"));
            if vmap_stack {
                min_thread_shift.max(page_shift)
            } else {
                min_thread_shift
            }
        }
        KernelArch::Riscv64 => page_shift + riscv_thread_order(config)? + kasan(&["CONFIG_KASAN"]),
    };
    Ok(1 << shift)
}

/// `CONFIG_THREAD_SIZE_ORDER` (0..=4), 2 when unset.
fn riscv_thread_order(config: Option<&KernelConfig>) -> Result<u32, ArchError> {
    const OPTION: &str = "CONFIG_THREAD_SIZE_ORDER";
    let Some((config, value)) = config.and_then(|c| Some((c, c.value(OPTION)?))) else {
        return Ok(RISCV_DEFAULT_THREAD_ORDER);
    };
    value
        .parse::<u32>()
        .ok()
        .filter(|order| *order <= RISCV_MAX_THREAD_ORDER)
        .ok_or_else(|| ArchError::ConfigValue {
            config: config.origin().to_string(),
            option: OPTION,
            value: value.to_string(),
            expected: "expected a page order from 0 to 4",
        })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const KIB: u32 = 1 << 10;

    fn config(lines: &[&str]) -> KernelConfig {
        KernelConfig::parse(&lines.join("\n"), "test config")
    }

    #[test]
    fn parse_keeps_set_options_and_skips_comments() {
        let c = KernelConfig::parse(
            "#\n# Linux/x86 6.18.44 Kernel Configuration\n#\nCONFIG_VMAP_STACK=y\n\
             # CONFIG_KASAN is not set\nCONFIG_THREAD_SIZE_ORDER=3\nCONFIG_MOD=m\n\
             CONFIG_CC_VERSION_TEXT=\"gcc (GCC) 15.3.0\"\n",
            "x",
        );
        assert!(c.is_enabled("CONFIG_VMAP_STACK"));
        assert!(!c.is_enabled("CONFIG_KASAN"));
        assert_eq!(c.value("CONFIG_KASAN"), None);
        assert!(!c.is_enabled("CONFIG_MOD"), "modules are not `y`");
        assert_eq!(c.value("CONFIG_THREAD_SIZE_ORDER"), Some("3"));
        assert_eq!(
            c.value("CONFIG_CC_VERSION_TEXT"),
            Some("\"gcc (GCC) 15.3.0\"")
        );
        assert_eq!(c.origin(), "x");
    }

    /// arch × page size × KASAN, with the configuration and without one.
    #[test]
    fn thread_size_per_architecture_page_size_and_kasan() {
        use KernelArch::*;
        let no_kasan = config(&["CONFIG_VMAP_STACK=y", "# CONFIG_KASAN is not set"]);
        let kasan = config(&[
            "CONFIG_VMAP_STACK=y",
            "CONFIG_KASAN=y",
            "CONFIG_KASAN_GENERIC=y",
        ]);
        let table: &[(KernelArch, u64, u32, u32)] = &[
            // (arch, page size, without KASAN, with KASAN)
            (X86_64, 4096, 16 * KIB, 32 * KIB),
            (Arm64, 4096, 16 * KIB, 32 * KIB),
            (Arm64, 16384, 16 * KIB, 32 * KIB),
            (Arm64, 65536, 64 * KIB, 64 * KIB),
            (Riscv64, 4096, 16 * KIB, 32 * KIB),
        ];
        for &(arch, page, plain, with_kasan) in table {
            let case = format!("{arch}, page {page}");
            assert_eq!(
                thread_size(arch, page, Some(&no_kasan)).unwrap(),
                plain,
                "{case}"
            );
            assert_eq!(
                thread_size(arch, page, None).unwrap(),
                plain,
                "{case}, no config"
            );
            assert_eq!(
                thread_size(arch, page, Some(&kasan)).unwrap(),
                with_kasan,
                "{case}, KASAN"
            );
        }
    }

    #[test]
    fn arm64_kasan_flavours_and_vmap_stack() {
        let size = |lines: &[&str], page| {
            thread_size(KernelArch::Arm64, page, Some(&config(lines))).unwrap()
        };
        // Software tags double the stack, hardware tags (MTE) do not.
        let sw_tags = [
            "CONFIG_VMAP_STACK=y",
            "CONFIG_KASAN=y",
            "CONFIG_KASAN_SW_TAGS=y",
        ];
        let hw_tags = [
            "CONFIG_VMAP_STACK=y",
            "CONFIG_KASAN=y",
            "CONFIG_KASAN_HW_TAGS=y",
        ];
        assert_eq!(size(&sw_tags, 4096), 32 * KIB);
        assert_eq!(size(&hw_tags, 4096), 16 * KIB);
        // Without VMAP_STACK (before 6.17) stacks stay below a 64 KiB page.
        assert_eq!(size(&["# CONFIG_VMAP_STACK is not set"], 65536), 16 * KIB);
        assert_eq!(
            size(&["CONFIG_KASAN=y", "CONFIG_KASAN_GENERIC=y"], 65536),
            32 * KIB
        );
    }

    #[test]
    fn riscv64_thread_size_order() {
        let size = |lines: &[&str]| thread_size(KernelArch::Riscv64, 4096, Some(&config(lines)));
        assert_eq!(size(&["CONFIG_THREAD_SIZE_ORDER=1"]).unwrap(), 8 * KIB);
        assert_eq!(size(&["CONFIG_THREAD_SIZE_ORDER=3"]).unwrap(), 32 * KIB);
        assert_eq!(
            size(&["CONFIG_THREAD_SIZE_ORDER=3", "CONFIG_KASAN=y"]).unwrap(),
            64 * KIB
        );
        assert_eq!(size(&["CONFIG_THREAD_SIZE_ORDER=0"]).unwrap(), 4 * KIB);
        for bad in [
            "CONFIG_THREAD_SIZE_ORDER=5",
            "CONFIG_THREAD_SIZE_ORDER=\"two\"",
        ] {
            let err = size(&[bad]).expect_err(bad);
            assert!(
                err.to_string().starts_with(&format!(
                    "kernel configuration test config: {bad} (expected a page order"
                )),
                "{err}"
            );
        }
    }

    #[test]
    fn impossible_page_sizes_are_errors() {
        for page in [0, 1, 2048, 4095, 6144, 1 << 21] {
            let err = thread_size(KernelArch::X86_64, page, None).expect_err("bad page size");
            assert_eq!(
                err.to_string(),
                format!("page size {page} is not a power of two between 4 KiB and 1 MiB")
            );
        }
    }

    #[test]
    fn read_file_takes_plain_and_gzip_configs() {
        let dir = std::env::temp_dir().join(format!("pwru-kconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = "CONFIG_KASAN=y\nCONFIG_THREAD_SIZE_ORDER=2\n";
        let plain = dir.join("config-plain");
        std::fs::write(&plain, text).unwrap();
        let gz = dir.join("config.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text.as_bytes()).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        for path in [&plain, &gz] {
            let c = KernelConfig::read_file(path).expect("config reads");
            assert!(c.is_enabled("CONFIG_KASAN"), "{}", path.display());
            assert_eq!(c.value("CONFIG_THREAD_SIZE_ORDER"), Some("2"));
            assert_eq!(c.origin(), path.display().to_string());
        }
        let missing = dir.join("absent");
        assert!(KernelConfig::read_file(&missing).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
