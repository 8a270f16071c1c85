//! The bearer-token parser: any text is a token's parts or nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Some((id, secret)) = swb_api::token::parse(text)
    {
        assert_eq!(format!("{}{id}_{secret}", swb_api::token::PREFIX), text);
    }
});
