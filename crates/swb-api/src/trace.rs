//! W3C trace context (`traceparent`): one trace per call tree, one span per call.
//! A tree takes its trace id from its root's caller when it sends a well-formed
//! `traceparent`, else from its root's invocation id; each call's span id is the
//! random tail of its own invocation id.

/// The trace id of a `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`), if it is
/// well formed and not all zeros.
pub fn trace_id(header: &str) -> Option<&str> {
    let mut parts = header.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    (parts.next().is_none()
        && hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && nonzero(trace)
        && hex(span, 16)
        && nonzero(span)
        && hex(flags, 2))
    .then_some(trace)
}

/// The trace id of a tree whose root came without one: the root's invocation id.
pub fn trace_of(invocation: &str) -> String {
    invocation.replace('-', "")
}

/// The `traceparent` a call passes on: its tree's trace, its own span.
pub fn traceparent(trace: &str, invocation: &str) -> String {
    let id = trace_of(invocation);
    let span = id.get(id.len().saturating_sub(16)..).unwrap_or_default();
    format!("00-{trace}-{span}-01")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_parse_and_are_made_per_call() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let header = format!("00-{trace}-00f067aa0ba902b7-01");
        assert_eq!(trace_id(&header), Some(trace));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(trace_id(bad), None, "{bad}");
        }
        let id = "01a245c9-12df-7529-85a8-25925ee93709";
        assert_eq!(trace_of(id), "01a245c912df752985a825925ee93709");
        let made = traceparent(trace, id);
        assert_eq!(made, format!("00-{trace}-85a825925ee93709-01"));
        assert_eq!(trace_id(&made), Some(trace));
    }
}
