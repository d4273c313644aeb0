//! pgoutput messages: the message parser alone, then the decoder's row decoding.
//!
//! Input: frames, each a big-endian u16 length and that many bytes (a last frame without a
//! full length takes the rest). Every frame is parsed on its own both outside and inside a
//! stream chunk, with every tuple column read; then the frames go in order through
//! `decode_offline` (Relation messages define tables, changes decode to rows).
//!
//! Properties: nothing panics, loops or over-allocates; a tuple yields exactly its column count
//! of values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ordo_capture::fuzzing::decode_offline;
use ordo_capture::postgres::pgoutput::{PgMessage, Tuple, parse};

fn frames(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let (len, rest) = match data {
            [a, b, rest @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), rest),
            _ => (data.len(), data),
        };
        let (frame, rest) = rest.split_at(len.min(rest.len()));
        out.push(frame);
        data = rest;
    }
    out
}

fn read_all(t: &Tuple<'_>) {
    let mut n = 0;
    for v in t.iter() {
        n += 1;
        if v.is_err() {
            return;
        }
    }
    assert_eq!(n, t.len(), "a tuple yields its column count");
}

fn tuples(msg: &PgMessage<'_>) {
    match msg {
        PgMessage::Insert { new, .. } => read_all(new),
        PgMessage::Update { old, new, .. } => {
            if let Some((_, old)) = old {
                read_all(old);
            }
            read_all(new);
        }
        PgMessage::Delete { old: (_, old), .. } => read_all(old),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let frames = frames(data);
    for frame in &frames {
        for in_stream in [false, true] {
            if let Ok(msg) = parse(frame, in_stream) {
                tuples(&msg);
            }
        }
    }
    let _ = decode_offline(frames.iter().copied());
});
