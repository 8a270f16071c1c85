//! The static checks of uploaded modules: any bytes are accepted or refused with a
//! one-line reason.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = swb_runtime::inspect(data) {
        assert!(!e.to_string().contains('\n'));
    }
});
