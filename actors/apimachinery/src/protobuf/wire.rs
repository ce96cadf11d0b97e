//! Minimal protobuf wire-format reader.
//!
//! Supports the four wire types Kubernetes uses (varint, 64-bit,
//! length-delimited, 32-bit). Groups (wire types 3 and 4) and the reserved
//! wire types 6 and 7 are rejected. All errors are plain strings; the caller
//! wraps them into [`super::DecodeError::Malformed`] with context.

/// One decoded field value, borrowing length-delimited payloads from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl WireValue<'_> {
    /// Human-readable wire type name for error messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            WireValue::Varint(_) => "varint",
            WireValue::Fixed64(_) => "64-bit",
            WireValue::Bytes(_) => "length-delimited",
            WireValue::Fixed32(_) => "32-bit",
        }
    }
}

/// Largest field number protobuf allows (2^29 - 1).
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// Sequential reader over one message's bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Reads a base-128 varint of at most 10 bytes that fits into 64 bits.
    pub(crate) fn read_varint(&mut self) -> Result<u64, String> {
        let mut result: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(format!("truncated varint at offset {}", self.pos));
            };
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(format!("varint overflows 64 bits at offset {}", self.pos - 1));
            }
            result |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(result);
            }
        }
        Err(format!("varint longer than 10 bytes at offset {}", self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len()).ok_or_else(|| {
            format!("truncated input: need {n} bytes at offset {}, have {}", self.pos, self.buf.len() - self.pos)
        })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// Returns the next `(field number, value)` pair, or `None` at the end of
    /// the message.
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.read_varint()?;
        let number = key >> 3;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err(format!("invalid field number {number}"));
        }
        // Checked above: number fits in 29 bits.
        let number = number as u32;
        let value = match key & 7 {
            0 => WireValue::Varint(self.read_varint()?),
            1 => {
                let b = self.take(8)?;
                let mut arr = [0u8; 8];
                arr.copy_from_slice(b);
                WireValue::Fixed64(u64::from_le_bytes(arr))
            }
            2 => {
                let len = self.read_varint()?;
                let len = usize::try_from(len).map_err(|_| format!("length {len} of field {number} is too large"))?;
                WireValue::Bytes(self.take(len)?)
            }
            3 | 4 => return Err(format!("field {number} uses the unsupported group wire type")),
            5 => {
                let b = self.take(4)?;
                let mut arr = [0u8; 4];
                arr.copy_from_slice(b);
                WireValue::Fixed32(u32::from_le_bytes(arr))
            }
            other => return Err(format!("field {number} has invalid wire type {other}")),
        };
        Ok(Some((number, value)))
    }

    /// True when every byte has been consumed.
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }
}
