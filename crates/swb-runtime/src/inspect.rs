//! Static checks of uploaded modules, done without compiling: is it a WASI preview 1
//! command module that Switchboard can run?

use wasmparser::{Encoding, ExternalKind, Parser, Payload, TypeRef, Validator, WasmFeatures};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidModule {
    #[error("not a WebAssembly module: {0}")]
    Malformed(String),
    #[error(
        "this is a WebAssembly component; Switchboard runs WASI preview 1 command modules (build for wasm32-wasip1)"
    )]
    Component,
    #[error(
        "module imports {module}::{name}, which is neither WASI preview 1 nor the platform's (swb::call, swb::result)"
    )]
    ForbiddenImport { module: String, name: String },
    #[error(
        "module imports a {kind} ({module}::{name}); only functions (WASI preview 1, swb::call, swb::result) may be imported"
    )]
    NonFunctionImport {
        module: String,
        name: String,
        kind: &'static str,
    },
    #[error(
        "module imports {module}::{name} with the wrong type: it is {expected} (docs/guest-abi.md)"
    )]
    BadSignature {
        module: String,
        name: String,
        expected: &'static str,
    },
    #[error("module has no `_start` function: build it as a command (a `main`), not a library")]
    NoStart,
    #[error("module does not export its memory as `memory`, which WASI requires")]
    NoMemory,
}

impl InvalidModule {
    /// A stable machine-readable reason for error details.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::Component => "component",
            Self::ForbiddenImport { .. } | Self::NonFunctionImport { .. } => "forbidden_import",
            Self::BadSignature { .. } => "bad_import_type",
            Self::NoStart => "no_start",
            Self::NoMemory => "no_memory",
        }
    }
}

/// The first four bytes of every WebAssembly binary.
const WASM_MAGIC: &[u8] = b"\0asm";

const WASI_P1_MODULE: &str = "wasi_snapshot_preview1";

/// Every function of `wasi_snapshot_preview1`.
const WASI_P1_FUNCTIONS: &[&str] = &[
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "fd_advise",
    "fd_allocate",
    "fd_close",
    "fd_datasync",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_fdstat_set_rights",
    "fd_filestat_get",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
    "fd_pread",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "fd_pwrite",
    "fd_read",
    "fd_readdir",
    "fd_renumber",
    "fd_seek",
    "fd_sync",
    "fd_tell",
    "fd_write",
    "path_create_directory",
    "path_filestat_get",
    "path_filestat_set_times",
    "path_link",
    "path_open",
    "path_readlink",
    "path_remove_directory",
    "path_rename",
    "path_symlink",
    "path_unlink_file",
    "poll_oneoff",
    "proc_exit",
    "proc_raise",
    "sched_yield",
    "random_get",
    "sock_accept",
    "sock_recv",
    "sock_send",
    "sock_shutdown",
];

/// Bytes as hex pairs separated by spaces: `00 61 73 6d`.
fn spaced_hex(bytes: &[u8]) -> String {
    let pairs: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    pairs.join(" ")
}

/// An import's name as a refusal quotes it: on one line (control characters
/// escaped) and at most 64 characters, whatever the module says.
fn shown(name: &str) -> String {
    const MAX: usize = 64;
    let escaped: String = name.escape_debug().collect();
    match escaped.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &escaped[..cut]),
        None => escaped,
    }
}

/// Checks that `bytes` are a valid WASI preview 1 command module.
pub fn inspect(bytes: &[u8]) -> Result<(), InvalidModule> {
    // Said in our words: wasmparser prints the bytes it expected as a multi-line list.
    if bytes.is_empty() {
        return Err(InvalidModule::Malformed("the file is empty".to_owned()));
    }
    if !bytes.starts_with(WASM_MAGIC) {
        let head = &bytes[..bytes.len().min(WASM_MAGIC.len())];
        return Err(InvalidModule::Malformed(format!(
            "it does not start with the bytes {} (\\0asm) but with {}",
            spaced_hex(WASM_MAGIC),
            spaced_hex(head)
        )));
    }
    let malformed = |e: wasmparser::BinaryReaderError| {
        InvalidModule::Malformed(format!("{} (at byte {})", e.message(), e.offset()))
    };
    let mut has_start = false;
    let mut has_memory = false;
    let mut types = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(malformed)? {
            Payload::TypeSection(reader) => {
                for ty in reader.into_iter_err_on_gc_types() {
                    types.push(ty.map_err(malformed)?);
                }
            }
            Payload::Version {
                encoding: Encoding::Component,
                ..
            } => return Err(InvalidModule::Component),
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(malformed)?;
                    let (module, name) = (shown(import.module), shown(import.name));
                    let kind = match import.ty {
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => None,
                        TypeRef::Memory(_) => Some("memory"),
                        TypeRef::Table(_) => Some("table"),
                        TypeRef::Global(_) => Some("global"),
                        TypeRef::Tag(_) => Some("tag"),
                    };
                    if let Some(kind) = kind {
                        return Err(InvalidModule::NonFunctionImport { module, name, kind });
                    }
                    let wasi = module == WASI_P1_MODULE && WASI_P1_FUNCTIONS.contains(&import.name);
                    let platform = module == crate::host::MODULE
                        && crate::host::FUNCTIONS.contains(&import.name);
                    if !wasi && !platform {
                        return Err(InvalidModule::ForbiddenImport { module, name });
                    }
                    // The platform's functions are checked here, not at the first call.
                    if let (true, TypeRef::Func(index)) = (platform, import.ty) {
                        let (params, results, expected) = crate::host::signature(import.name);
                        let ok = types
                            .get(index as usize)
                            .is_some_and(|t| t.params() == params && t.results() == results);
                        if !ok {
                            return Err(InvalidModule::BadSignature {
                                module,
                                name,
                                expected,
                            });
                        }
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(malformed)?;
                    match (export.name, export.kind) {
                        ("_start", ExternalKind::Func) => has_start = true,
                        ("memory", ExternalKind::Memory) => has_memory = true,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Validator::new_with_features(WasmFeatures::default())
        .validate_all(bytes)
        .map_err(malformed)?;
    if !has_start {
        return Err(InvalidModule::NoStart);
    }
    if !has_memory {
        return Err(InvalidModule::NoMemory);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wat(s: &str) -> Vec<u8> {
        wat::parse_str(s).unwrap()
    }

    #[test]
    fn the_platform_s_functions_are_allowed_with_their_types_only() {
        let module = |ty: &str| {
            wat(&format!(
                r#"(module (import "swb" "call" (func {ty})) (memory (export "memory") 1) (func (export "_start")))"#
            ))
        };
        assert_eq!(
            inspect(&module("(param i32 i32 i32 i32 i32 i32) (result i64)")),
            Ok(())
        );
        let err = inspect(&module("(param i32) (result i32)")).unwrap_err();
        assert_eq!(err.reason(), "bad_import_type");
        assert!(err.to_string().contains("(result i64)"), "{err}");
    }

    #[test]
    fn accepts_a_wasi_command() {
        let m = wat(r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "_start")))"#);
        assert_eq!(inspect(&m), Ok(()));
    }

    #[test]
    fn rejects_what_cannot_run() {
        let cases = [
            (b"garbage bytes".to_vec(), "malformed"),
            (
                wat(r#"(module (memory (export "memory") 1) (func (export "run")))"#),
                "no_start",
            ),
            (wat(r#"(module (func (export "_start")))"#), "no_memory"),
            (
                wat(
                    r#"(module (import "env" "host_call" (func)) (memory (export "memory") 1) (func (export "_start")))"#,
                ),
                "forbidden_import",
            ),
            (
                wat(
                    r#"(module (import "wasi_snapshot_preview1" "sock_open" (func)) (memory (export "memory") 1) (func (export "_start")))"#,
                ),
                "forbidden_import",
            ),
            (
                wat(r#"(module (import "env" "memory" (memory 1)) (func (export "_start")))"#),
                "forbidden_import",
            ),
            (wat("(component)"), "component"),
        ];
        for (bytes, reason) in cases {
            let err = inspect(&bytes).unwrap_err();
            assert_eq!(err.reason(), reason, "{err}");
        }
        let err = inspect(&wat(r#"(module (import "env" "host_call" (func)) (memory (export "memory") 1) (func (export "_start")))"#)).unwrap_err();
        assert!(err.to_string().contains("env::host_call"), "{err}");
        // Malformed files are described on one line, with where they go wrong.
        let says = |bytes: &[u8]| inspect(bytes).unwrap_err().to_string();
        assert_eq!(
            says(b"(module)"),
            "not a WebAssembly module: it does not start with the bytes 00 61 73 6d (\\0asm) but with 28 6d 6f 64"
        );
        assert_eq!(says(b""), "not a WebAssembly module: the file is empty");
        let truncated =
            &wat(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)[..20];
        let err = says(truncated);
        assert!(
            err.starts_with("not a WebAssembly module: ") && err.contains("(at byte "),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
        // Names are quoted on one line and cut short (found by the fuzzer).
        let hostile = format!(
            r#"(module (import "wasi_snapshot_\n^" "{}" (func)) (memory (export "memory") 1) (func (export "_start")))"#,
            "x".repeat(1000)
        );
        let err = says(&wat(&hostile));
        assert!(err.contains("wasi_snapshot_\\n^::xxx"), "{err}");
        assert!(!err.contains('\n') && err.len() < 300, "{err}");
    }
}
