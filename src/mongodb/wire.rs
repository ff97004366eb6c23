//! The MongoDB wire protocol's `OP_MSG`, as bytes: encoding a command and
//! decoding a reply, with no I/O (both connection types share it). Every
//! malformed or truncated reply is a [`MongoError::Protocol`], never a
//! panic: lengths are checked before anything is read or allocated.

use bson::Document;

use super::MongoError;

/// `OP_MSG`'s opcode.
const OP_MSG: i32 = 2013;
/// The standard message header: length, request id, response to, opcode.
pub(crate) const HEADER_LEN: usize = 16;
/// `OP_MSG` flag: the message ends with a CRC-32C checksum.
const CHECKSUM_PRESENT: u32 = 1;
/// `OP_MSG` flag: the sender will not wait for (or send) a reply.
pub(crate) const MORE_TO_COME: u32 = 1 << 1;
/// Flags a reply may carry that this client understands; any other
/// *required* bit (0–15) is a protocol error, as the specification says.
const KNOWN_REQUIRED: u32 = CHECKSUM_PRESENT | MORE_TO_COME;
/// The largest message a server may send unless its `hello` says
/// otherwise (48 MB, the MongoDB default).
pub(crate) const DEFAULT_MAX_MESSAGE: usize = 48_000_000;

/// An `OP_MSG` carrying `body` (which must already name its `$db`).
pub(crate) fn encode(request_id: i32, body: &Document, flags: u32) -> Result<Vec<u8>, MongoError> {
    let mut message = vec![0; HEADER_LEN];
    message.extend_from_slice(&flags.to_le_bytes());
    message.push(0); // section kind 0: the body
    body.to_writer(&mut message)
        .map_err(|e| MongoError::Bson(e.to_string()))?;
    let length = i32::try_from(message.len())
        .map_err(|_| MongoError::Protocol("command larger than 2 GiB".into()))?;
    message[0..4].copy_from_slice(&length.to_le_bytes());
    message[4..8].copy_from_slice(&request_id.to_le_bytes());
    message[8..12].copy_from_slice(&0i32.to_le_bytes());
    message[12..16].copy_from_slice(&OP_MSG.to_le_bytes());
    Ok(message)
}

/// A reply's header, read before its body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    /// The whole message's length, header included.
    pub(crate) length: usize,
    response_to: i32,
    op_code: i32,
}

impl Header {
    /// Parses the 16 header bytes, rejecting lengths outside
    /// `HEADER_LEN..=max_message` before the body is read.
    pub(crate) fn parse(bytes: &[u8; HEADER_LEN], max_message: usize) -> Result<Self, MongoError> {
        let word =
            |i: usize| i32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let length = word(0);
        let length = usize::try_from(length)
            .ok()
            .filter(|&n| (HEADER_LEN + 5..=max_message).contains(&n))
            .ok_or_else(|| MongoError::Protocol(format!("reply length {length} out of range")))?;
        Ok(Header {
            length,
            response_to: word(8),
            op_code: word(12),
        })
    }

    /// Bytes of body that follow the header.
    pub(crate) fn body_len(&self) -> usize {
        self.length - HEADER_LEN
    }
}

/// Decodes the body of a reply to request `request_id`: its one kind-0
/// document (document sequences are skipped).
pub(crate) fn decode(header: Header, body: &[u8], request_id: i32) -> Result<Document, MongoError> {
    let protocol = |what: String| MongoError::Protocol(what);
    if header.op_code != OP_MSG {
        return Err(protocol(format!("unexpected opcode {}", header.op_code)));
    }
    if header.response_to != request_id {
        return Err(protocol(format!(
            "reply to request {} while waiting for {request_id}",
            header.response_to
        )));
    }
    let (flags, mut sections) = split_at(body, 4).ok_or_else(|| protocol("no flag bits".into()))?;
    let flags = u32::from_le_bytes(flags.try_into().expect("4 bytes"));
    if flags & 0xFFFF & !KNOWN_REQUIRED != 0 {
        return Err(protocol(format!("unknown required flag bits {flags:#x}")));
    }
    if flags & CHECKSUM_PRESENT != 0 {
        // The checksum guards against corruption TCP already detects; it
        // is skipped, not verified.
        let end = sections
            .len()
            .checked_sub(4)
            .ok_or_else(|| protocol("no checksum".into()))?;
        sections = &sections[..end];
    }
    let mut body_doc = None;
    while let Some((&kind, rest)) = sections.split_first() {
        let size = read_i32(rest).ok_or_else(|| protocol("truncated section".into()))?;
        let size = usize::try_from(size)
            .ok()
            .filter(|&n| n >= 5 && n <= rest.len())
            .ok_or_else(|| protocol(format!("section size {size} out of range")))?;
        let (section, after) = rest.split_at(size);
        match kind {
            0 if body_doc.is_none() => {
                let doc = Document::from_reader(section)
                    .map_err(|e| protocol(format!("malformed reply document: {e}")))?;
                body_doc = Some(doc);
            }
            0 => return Err(protocol("two body sections".into())),
            1 => {} // a document sequence: not used in replies to commands
            other => return Err(protocol(format!("unknown section kind {other}"))),
        }
        sections = after;
    }
    body_doc.ok_or_else(|| protocol("reply without a body".into()))
}

/// The fuzz target's entry (`fuzz/fuzz_targets/wire_reply.rs`): `bytes`
/// as a whole reply, read as a connection reads one. Whatever the bytes,
/// a typed error or a document, never a panic; and a document decoded
/// encodes back to bytes that decode to the same document (byte for byte).
#[cfg(fuzzing)]
pub fn fuzz_reply(bytes: &[u8]) {
    let Some((header, body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return;
    };
    let Ok(header) = Header::parse(header, DEFAULT_MAX_MESSAGE) else {
        return;
    };
    let Some(body) = body.get(..header.body_len()) else {
        return; // a connection would wait for the rest
    };
    let Ok(document) = decode(header, body, header.response_to) else {
        return;
    };
    let mut again = encode(header.response_to, &document, 0).expect("a decoded document encodes");
    again[8..12].copy_from_slice(&header.response_to.to_le_bytes());
    let again_header = Header::parse(
        again[..HEADER_LEN].try_into().expect("16 bytes"),
        DEFAULT_MAX_MESSAGE,
    )
    .expect("its own header");
    let decoded = decode(again_header, &again[HEADER_LEN..], header.response_to);
    // Compared as bytes: a document holding a NaN is not equal to itself.
    let bytes = |d: &Document| {
        let mut bytes = Vec::new();
        d.to_writer(&mut bytes).expect("a decoded document encodes");
        bytes
    };
    let decoded = decoded.expect("its own encoding decodes");
    assert_eq!(bytes(&decoded), bytes(&document));
}

fn split_at(bytes: &[u8], at: usize) -> Option<(&[u8], &[u8])> {
    (bytes.len() >= at).then(|| bytes.split_at(at))
}

fn read_i32(bytes: &[u8]) -> Option<i32> {
    Some(i32::from_le_bytes(bytes.get(..4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use bson::doc;
    use proptest::prelude::*;

    use super::*;

    fn header_of(message: &[u8]) -> Header {
        Header::parse(
            message[..HEADER_LEN].try_into().unwrap(),
            DEFAULT_MAX_MESSAGE,
        )
        .unwrap()
    }

    /// A reply as a server would frame it: our encoding, answering `to`.
    fn reply(to: i32, body: &Document) -> Vec<u8> {
        let mut message = encode(99, body, 0).unwrap();
        message[8..12].copy_from_slice(&to.to_le_bytes());
        message
    }

    #[test]
    fn a_reply_round_trips() {
        let body = doc! { "ok": 1.0, "n": 3 };
        let message = reply(7, &body);
        let decoded = decode(header_of(&message), &message[HEADER_LEN..], 7).unwrap();
        assert_eq!(decoded, body);
    }

    #[test]
    fn a_checksummed_reply_is_read_without_its_checksum() {
        let mut message = reply(7, &doc! { "ok": 1.0 });
        message[16] |= CHECKSUM_PRESENT as u8;
        message.extend_from_slice(&[1, 2, 3, 4]);
        let length = message.len() as i32;
        message[0..4].copy_from_slice(&length.to_le_bytes());
        let decoded = decode(header_of(&message), &message[HEADER_LEN..], 7).unwrap();
        assert_eq!(decoded, doc! { "ok": 1.0 });
    }

    #[test]
    fn malformed_replies_are_typed_errors() {
        let good = reply(7, &doc! { "ok": 1.0 });
        let cases: Vec<(&str, Vec<u8>, i32)> = vec![
            ("wrong request", good.clone(), 8),
            (
                "truncated document",
                {
                    let mut m = good.clone();
                    m.truncate(m.len() - 3);
                    m
                },
                7,
            ),
            (
                "unknown flag",
                {
                    let mut m = good.clone();
                    m[16] |= 1 << 4;
                    m
                },
                7,
            ),
            (
                "unknown section kind",
                {
                    let mut m = good.clone();
                    m[20] = 9;
                    m
                },
                7,
            ),
            ("no body", good[..21].to_vec(), 7),
        ];
        for (what, message, request) in cases {
            let header = Header {
                length: message.len(),
                ..header_of(&good)
            };
            let result = decode(header, &message[HEADER_LEN..], request);
            assert!(
                matches!(result, Err(MongoError::Protocol(_))),
                "{what}: {result:?}"
            );
        }
        let mut huge = good;
        huge[0..4].copy_from_slice(&i32::MAX.to_le_bytes());
        let header = Header::parse(huge[..HEADER_LEN].try_into().unwrap(), DEFAULT_MAX_MESSAGE);
        assert!(
            matches!(header, Err(MongoError::Protocol(_))),
            "a 2 GiB reply is refused unread"
        );
    }

    proptest! {
        /// Whatever bytes arrive, decoding answers; it never panics.
        #[test]
        fn decoding_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200), flip in any::<usize>()) {
            let mut message = reply(1, &doc! { "ok": 1.0, "x": "y" });
            if !bytes.is_empty() {
                let at = flip % message.len();
                message[at] ^= bytes[0];
            }
            message.extend_from_slice(&bytes);
            if let Ok(header) = Header::parse(message[..HEADER_LEN].try_into().unwrap(), DEFAULT_MAX_MESSAGE) {
                let end = header.length.min(message.len());
                let _ = decode(header, &message[HEADER_LEN..end.max(HEADER_LEN)], 1);
            }
        }
    }
}
