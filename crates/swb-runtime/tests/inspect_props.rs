//! The module inspector reads untrusted uploads: whatever the bytes, it answers
//! `Ok` or a reason, never panics, and its reasons are one line.

use proptest::prelude::*;
use swb_testkit::guests;

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Err(e) = swb_runtime::inspect(bytes) {
        let message = e.to_string();
        prop_assert!(!message.contains('\n'), "{message}");
        prop_assert!(!e.reason().is_empty());
    }
    Ok(())
}

proptest! {
    #[test]
    fn any_bytes_are_judged_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        check(&bytes)?;
        // The same bytes behind the magic number and version, to reach the parser.
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        module.extend_from_slice(&bytes);
        check(&module)?;
    }

    /// Real modules with bytes changed or cut short, the shapes a fuzzer finds.
    #[test]
    fn mutated_modules_are_judged_without_panicking(
        pick in 0usize..4,
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..16),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let mut module = match pick {
            0 => guests::echo(),
            1 => guests::bad_import(),
            2 => guests::no_start(),
            _ => guests::sleeps(5),
        };
        for (at, byte) in edits {
            let at = at % module.len();
            module[at] = byte;
        }
        if let Some(cut) = cut {
            module.truncate(cut % (module.len() + 1));
        }
        check(&module)?;
    }
}
