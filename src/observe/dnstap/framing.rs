//! Frame Streams (fstrm), bidirectional, as dnstap uses it: a control
//! frame is a zero length (the escape), its length, its type and fields
//! (the content type `protobuf:dnstap.Dnstap`); a data frame is a
//! big-endian length and the payload ([`super::push_frame`] writes those).
//! The writer sends READY and START and reads ACCEPT; a collector reads
//! them here too, in the tests.

use std::io::{self, Read};

/// The Frame Streams content type of dnstap.
pub const CONTENT_TYPE: &[u8] = b"protobuf:dnstap.Dnstap";

/// Frame Streams control frame types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Control {
    Accept = 1,
    Start = 2,
    Stop = 3,
    Ready = 4,
    Finish = 5,
}

impl Control {
    fn from_u32(n: u32) -> Option<Self> {
        Some(match n {
            1 => Self::Accept,
            2 => Self::Start,
            3 => Self::Stop,
            4 => Self::Ready,
            5 => Self::Finish,
            _ => return None,
        })
    }
}

/// The control frame field that holds a content type.
const FIELD_CONTENT_TYPE: u32 = 1;
/// The longest control frame a reader may send (libfstrm's limit).
const MAX_CONTROL: usize = 512;

/// Appends a control frame: escape, length, type, and the content type
/// field when `content_type` (READY, ACCEPT and START carry it).
pub fn push_control(out: &mut Vec<u8>, kind: Control, content_type: bool) {
    let len = 4 + if content_type {
        8 + CONTENT_TYPE.len()
    } else {
        0
    };
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&(kind as u32).to_be_bytes());
    if content_type {
        out.extend_from_slice(&FIELD_CONTENT_TYPE.to_be_bytes());
        out.extend_from_slice(&(CONTENT_TYPE.len() as u32).to_be_bytes());
        out.extend_from_slice(CONTENT_TYPE);
    }
}

/// A control frame as read: its type and the content types it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlFrame {
    pub kind: Control,
    pub content_types: Vec<Vec<u8>>,
}

pub(super) fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Reads one control frame (the escape first): what a writer expects
/// from the reader (ACCEPT, FINISH), and what a test reader reads.
pub fn read_control(r: &mut impl Read) -> io::Result<ControlFrame> {
    let mut word = [0u8; 4];
    r.read_exact(&mut word)?;
    if word != [0; 4] {
        return Err(invalid(
            "Frame Streams: a data frame where a control frame was due",
        ));
    }
    r.read_exact(&mut word)?;
    let len = u32::from_be_bytes(word) as usize;
    if !(4..=MAX_CONTROL).contains(&len) {
        return Err(invalid(format!(
            "Frame Streams: a control frame of {len} bytes"
        )));
    }
    let mut frame = vec![0u8; len];
    r.read_exact(&mut frame)?;
    parse_control(&frame)
}

/// Parses a control frame's body (after the escape and the length).
pub fn parse_control(frame: &[u8]) -> io::Result<ControlFrame> {
    let word = |at: usize| {
        frame
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
    };
    let kind = word(0)
        .and_then(Control::from_u32)
        .ok_or_else(|| invalid("Frame Streams: an unknown control frame type"))?;
    let mut content_types = Vec::new();
    let mut at = 4;
    while at < frame.len() {
        let (Some(field), Some(len)) = (word(at), word(at + 4)) else {
            return Err(invalid("Frame Streams: a truncated control field"));
        };
        let start = at + 8;
        let value = frame
            .get(start..start + len as usize)
            .ok_or_else(|| invalid("Frame Streams: a control field past the frame"))?;
        if field == FIELD_CONTENT_TYPE {
            content_types.push(value.to_vec());
        }
        at = start + len as usize;
    }
    Ok(ControlFrame {
        kind,
        content_types,
    })
}
