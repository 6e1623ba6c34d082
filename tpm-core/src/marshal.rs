//! Reading command parameters and writing response parameters.
//!
//! [`Reader`] walks a parameter (or handle) area and numbers each top-level field, so an
//! unmarshalling failure becomes the format-one code a real TPM returns: e.g.
//! `TPM_RC_INSUFFICIENT + TPM_RC_P + TPM_RC_2` when the second parameter is cut short
//! (Part 1, 18.8 "Response Code Details"; the reference implementation numbers parameters the
//! same way). Structured types come from the `tpm2-protocol` crate through [`Reader::tpm`];
//! scalars and sized buffers are read here directly so their codes are exact.

use alloc::vec::Vec;
use tpm2_protocol::{TpmError, TpmMarshal, TpmSized, TpmUnmarshal, TpmWriter};

use crate::rc::{TpmRc, TpmResult};

/// A cursor over a parameter area that tags errors with the current parameter number.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    /// 1-based number of the field being read.
    index: u8,
}

impl<'a> Reader<'a> {
    /// A reader over a command's parameter area.
    pub fn params(buf: &'a [u8]) -> Self {
        Self { buf, index: 0 }
    }

    /// Bytes not consumed yet.
    pub fn remaining(&self) -> &'a [u8] {
        self.buf
    }

    /// Starts the next numbered field; errors after this carry its number.
    fn next_field(&mut self) {
        self.index = self.index.saturating_add(1);
    }

    /// Tags `rc` with the number of the field being read.
    pub fn err(&self, rc: TpmRc) -> TpmRc {
        rc.param(self.index)
    }

    fn take(&mut self, n: usize) -> TpmResult<&'a [u8]> {
        if self.buf.len() < n {
            return Err(self.err(TpmRc::INSUFFICIENT));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn take_array<const N: usize>(&mut self) -> TpmResult<[u8; N]> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// Reads the next parameter as a UINT8.
    pub fn u8(&mut self) -> TpmResult<u8> {
        self.next_field();
        self.raw_u8()
    }

    /// Reads the next parameter as a UINT16.
    pub fn u16(&mut self) -> TpmResult<u16> {
        self.next_field();
        self.raw_u16()
    }

    /// Reads the next parameter as a UINT32.
    pub fn u32(&mut self) -> TpmResult<u32> {
        self.next_field();
        self.raw_u32()
    }

    /// Reads the next parameter as a UINT64.
    pub fn u64(&mut self) -> TpmResult<u64> {
        self.next_field();
        Ok(u64::from_be_bytes(self.take_array()?))
    }

    /// Reads the next parameter as a TPM2B with at most `max` bytes of payload;
    /// a larger size is TPM_RC_SIZE (Part 2, 10.4 TPM2B).
    pub fn tpm2b(&mut self, max: usize) -> TpmResult<&'a [u8]> {
        self.next_field();
        self.raw_tpm2b(max)
    }

    /// Reads the next parameter as a TPMI_YES_NO (Part 2, 9.2): anything but 0 or 1 is
    /// TPM_RC_VALUE.
    pub fn yes_no(&mut self) -> TpmResult<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.err(TpmRc::VALUE)),
        }
    }

    /// Reads the next parameter with the `tpm2-protocol` unmarshaller of `T`.
    pub fn tpm<T: TpmUnmarshal>(&mut self) -> TpmResult<T> {
        self.next_field();
        match T::unmarshal(self.buf) {
            Ok((value, tail)) => {
                self.buf = tail;
                Ok(value)
            }
            Err(e) => Err(self.err(rc_of(e))),
        }
    }

    /// Reads a part of the current field without advancing the field number (for
    /// structures this crate parses itself).
    pub fn raw_u8(&mut self) -> TpmResult<u8> {
        Ok(self.take_array::<1>()?[0])
    }

    /// See [`Reader::raw_u8`].
    pub fn raw_u16(&mut self) -> TpmResult<u16> {
        Ok(u16::from_be_bytes(self.take_array()?))
    }

    /// See [`Reader::raw_u8`].
    pub fn raw_u32(&mut self) -> TpmResult<u32> {
        Ok(u32::from_be_bytes(self.take_array()?))
    }

    /// See [`Reader::raw_u8`].
    pub fn raw_bytes(&mut self, n: usize) -> TpmResult<&'a [u8]> {
        self.take(n)
    }

    /// See [`Reader::raw_u8`].
    pub fn raw_tpm2b(&mut self, max: usize) -> TpmResult<&'a [u8]> {
        let size = usize::from(self.raw_u16()?);
        if size > max {
            return Err(self.err(TpmRc::SIZE));
        }
        self.take(size)
    }

    /// Starts the next numbered field for a structure read with the `raw_*` calls.
    pub fn begin(&mut self) {
        self.next_field();
    }

    /// Every parameter must be consumed: leftover bytes are TPM_RC_SIZE (Part 3, 5.2: the
    /// reference implementation checks this after unmarshalling all parameters).
    pub fn finish(&self) -> TpmResult<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(TpmRc::SIZE)
        }
    }
}

/// Maps a `tpm2-protocol` unmarshalling error to the response code the reference
/// implementation returns for the same defect.
pub fn rc_of(e: TpmError) -> TpmRc {
    match e {
        TpmError::UnexpectedEnd { .. } => TpmRc::INSUFFICIENT,
        TpmError::TooManyBytes { .. } | TpmError::TooManyItems { .. } => TpmRc::SIZE,
        TpmError::TrailingData { .. } => TpmRc::SIZE,
        TpmError::InvalidTag { .. } => TpmRc::TAG,
        TpmError::VariantNotAvailable { .. } => TpmRc::SELECTOR,
        _ => TpmRc::VALUE,
    }
}

/// A growable response buffer with big-endian writers.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// Writes a TPM2B: UINT16 size then the bytes. Callers bound the length by the
    /// structure's capacity (all well below 64 KiB); longer input is truncated to keep the
    /// size field honest rather than panic.
    pub fn tpm2b(&mut self, v: &[u8]) -> &mut Self {
        let n = v.len().min(usize::from(u16::MAX));
        self.u16(n as u16);
        self.bytes(&v[..n])
    }

    /// Marshals a `tpm2-protocol` value.
    pub fn tpm<T: TpmMarshal + TpmSized>(&mut self, v: &T) -> TpmResult<&mut Self> {
        let start = self.buf.len();
        self.buf.resize(start + v.len(), 0);
        let mut w = TpmWriter::new(&mut self.buf[start..]);
        if v.marshal(&mut w).is_err() {
            self.buf.truncate(start);
            return Err(TpmRc::FAILURE);
        }
        let written = w.len();
        self.buf.truncate(start + written);
        Ok(self)
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parameters() {
        let mut r = Reader::params(&[0, 1, 0]);
        assert_eq!(r.u16(), Ok(1));
        assert_eq!(r.u16(), Err(TpmRc(0x2DA)));
    }

    #[test]
    fn tpm2b_bounds() {
        let mut r = Reader::params(&[0, 3, 1, 2, 3, 0, 9]);
        assert_eq!(r.tpm2b(8), Ok(&[1u8, 2, 3][..]));
        assert_eq!(r.tpm2b(8), Err(TpmRc::SIZE.param(2)));
    }
}
