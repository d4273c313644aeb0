//! Binlog events: framing and checksum, the small events, TABLE_MAPs, and rows events decoded
//! against a compiled table map.
//!
//! Input: the first byte picks the mode.
//! - 0: byte 1 = event type, bytes 2..4 = flags (LE), rest = body: framed as a whole event
//!   with a correct CRC32, read back as the stream reads it, checksum verified, body decoded.
//! - 1: the same, but the body's last 4 bytes are its checksum (mostly wrong).
//! - 2: byte 1 = event type, byte 2 = post-header length, rest = body: decoded directly.
//! - 3: byte 1 = rows event type, bytes 2..4 = table map length (LE), then the TABLE_MAP
//!   body, then the rows event body: rows decoded against the compiled table map.
//!
//! Properties: nothing panics or hangs; every row image has one value per table column.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ordo_capture::fuzzing::{event, event_body, rows_against};

fuzz_target!(|data: &[u8]| {
    let [mode, t, rest @ ..] = data else {
        return;
    };
    match mode % 4 {
        0 | 1 => {
            if let [f0, f1, body @ ..] = rest {
                let _ = event(*t, u16::from_le_bytes([*f0, *f1]), body, mode % 4 == 0);
            }
        }
        2 => {
            if let [post_header, body @ ..] = rest {
                let _ = event_body(*t, body, usize::from(*post_header));
            }
        }
        _ => {
            let [l0, l1, rest @ ..] = rest else {
                return;
            };
            let len = usize::from(u16::from_le_bytes([*l0, *l1])).min(rest.len());
            let (map, rows) = rest.split_at(len);
            if let Ok((width, changes)) = rows_against(map, *t, rows) {
                for image in changes.iter().flat_map(|(b, a)| b.iter().chain(a.iter())) {
                    assert_eq!(image.len(), width, "one value per column");
                }
            }
        }
    }
});
