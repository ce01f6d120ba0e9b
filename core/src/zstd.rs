//! The zstd gate: RFC 8878 frames in, decompressed bytes out, under hard limits.
//!
//! The gate does the frame-level parsing itself and hands ruzstd exactly one complete block at a
//! time, so that every decision that bounds memory is made here, before ruzstd allocates:
//! - the window a frame declares (`Window_Descriptor`, or `Frame_Content_Size` for single-segment
//!   frames) is checked against `max_window_size`;
//! - frames that need a dictionary, reserved bits and reserved block types are refused;
//! - a block's stored size is at most 128 KiB, so the input buffer is bounded;
//! - `Frame_Content_Size` is never used to size anything (it is advisory), but a frame that
//!   declares one must decode to exactly that many bytes, as libzstd (and so GNU tar and 0.6.2)
//!   insists: decoding stops with an error as soon as a block overshoots it;
//! - the content checksum, when present, is verified;
//! - several frames are read in sequence; skippable frames are skipped unparsed; anything after a
//!   frame that is not a frame magic is trailing data; input ending inside a frame is truncated.
//!
//! The decompressed bytes leave through a callback, straight from ruzstd's window buffer.

use alloc::format;
use alloc::vec::Vec;

use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

use crate::error::{ContainerError, Error};

/// The zstd frame magic number, little-endian on the wire.
pub const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const MAX_BLOCK: u32 = 128 * 1024;

/// Whether four bytes start a skippable frame (`0x184D2A5?`).
pub fn is_skippable_magic(b: &[u8]) -> bool {
    matches!(b, [x, 0x2a, 0x4d, 0x18, ..] if x & 0xf0 == 0x50)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Next: 4 bytes of a frame magic.
    Magic,
    /// Next: the frame header descriptor byte.
    Descriptor,
    /// Next: the rest of the frame header, `n` bytes.
    HeaderRest(usize),
    /// Next: 4 bytes of skippable frame size.
    SkipSize,
    /// Skipping a skippable frame's body.
    Skip(u64),
    /// Next: a 3-byte block header.
    BlockHeader,
    /// Next: a whole block (header, content, and checksum when last), `n` bytes.
    Block { n: usize, last: bool },
}

/// Streaming zstd decoder with limits.
pub struct ZstdGate {
    decoder: FrameDecoder,
    max_window: u64,
    step: Step,
    /// Bytes of the unit being assembled when it spans input chunks.
    pending: Vec<u8>,
    /// Frame header bytes (magic included) for `FrameDecoder::reset`.
    header: Vec<u8>,
    checksum_flag: bool,
    /// The current frame's `Frame_Content_Size`, when it declares one.
    content_size: Option<u64>,
    /// Bytes the current frame has decoded so far.
    decoded: u64,
    /// Compressed bytes consumed.
    offset: u64,
    frames: u32,
}

impl core::fmt::Debug for ZstdGate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ZstdGate").field("step", &self.step).field("offset", &self.offset).finish()
    }
}

struct Downstream<'a, F> {
    out: &'a mut F,
    err: Option<Error>,
    written: u64,
}

impl<F: FnMut(&[u8]) -> Result<(), Error>> ruzstd::io::Write for Downstream<'_, F> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ruzstd::io::Error> {
        match (self.out)(buf) {
            Ok(()) => {
                self.written = self.written.saturating_add(buf.len() as u64);
                Ok(buf.len())
            }
            Err(e) => {
                self.err = Some(e);
                Err(ruzstd::io::Error::from(ruzstd::io::ErrorKind::Other))
            }
        }
    }

    fn flush(&mut self) -> Result<(), ruzstd::io::Error> {
        Ok(())
    }
}

impl ZstdGate {
    /// A gate that refuses windows above `max_window` bytes.
    pub fn new(max_window: u64) -> Self {
        let mut decoder = FrameDecoder::new();
        decoder.set_max_window_size(max_window);
        ZstdGate {
            decoder,
            max_window,
            step: Step::Magic,
            pending: Vec::new(),
            header: Vec::new(),
            checksum_flag: false,
            content_size: None,
            decoded: 0,
            offset: 0,
            frames: 0,
        }
    }

    /// Complete zstd frames decoded so far (skippable frames not counted).
    pub fn frames(&self) -> u32 {
        self.frames
    }

    fn err(&self, error: ContainerError) -> Error {
        Error::Container { offset: self.offset, error }
    }

    /// Number of bytes the current step needs before it can act.
    fn need(&self) -> usize {
        match self.step {
            Step::Magic | Step::SkipSize => 4,
            Step::Descriptor => 1,
            Step::HeaderRest(n) => n,
            Step::BlockHeader => 3,
            Step::Block { n, .. } => n,
            Step::Skip(_) => 0,
        }
    }

    /// Feeds compressed bytes; decoded bytes go to `out`.
    pub fn push<F>(&mut self, mut input: &[u8], out: &mut F) -> Result<(), Error>
    where
        F: FnMut(&[u8]) -> Result<(), Error>,
    {
        while !input.is_empty() {
            if let Step::Skip(remaining) = self.step {
                let take = usize::try_from(remaining).unwrap_or(usize::MAX).min(input.len());
                input = input.get(take..).unwrap_or(&[]);
                self.offset = self.offset.saturating_add(take as u64);
                let left = remaining - take as u64;
                self.step = if left == 0 { Step::Magic } else { Step::Skip(left) };
                continue;
            }
            let need = self.need();
            // Assemble exactly `need` bytes: borrowed from the input when they are all there,
            // copied into `pending` when the unit spans chunks.
            let mut unit_buf = core::mem::take(&mut self.pending);
            let unit: &[u8] = if unit_buf.is_empty() && input.len() >= need {
                let (u, rest) = input.split_at(need);
                input = rest;
                u
            } else {
                let take = (need - unit_buf.len()).min(input.len());
                let (u, rest) = input.split_at(take);
                unit_buf.extend_from_slice(u);
                input = rest;
                if unit_buf.len() < need {
                    self.pending = unit_buf;
                    return Ok(());
                }
                &unit_buf
            };
            let result = self.act(unit, out);
            self.offset = self.offset.saturating_add(need as u64);
            unit_buf.clear();
            self.pending = unit_buf;
            result?;
        }
        Ok(())
    }

    fn act<F>(&mut self, unit: &[u8], out: &mut F) -> Result<(), Error>
    where
        F: FnMut(&[u8]) -> Result<(), Error>,
    {
        match self.step {
            Step::Magic => {
                if unit == MAGIC {
                    self.header.clear();
                    self.header.extend_from_slice(unit);
                    self.step = Step::Descriptor;
                } else if is_skippable_magic(unit) {
                    self.step = Step::SkipSize;
                } else {
                    return Err(self.err(ContainerError::TrailingData));
                }
            }
            Step::SkipSize => {
                let mut b = [0u8; 4];
                b.copy_from_slice(unit.get(..4).unwrap_or(&[0; 4]));
                let n = u64::from(u32::from_le_bytes(b));
                self.step = if n == 0 { Step::Magic } else { Step::Skip(n) };
            }
            Step::Descriptor => {
                let fhd = unit.first().copied().unwrap_or(0);
                if fhd & 0x08 != 0 {
                    return Err(self.err(ContainerError::Reserved("frame header bit")));
                }
                let single_segment = fhd & 0x20 != 0;
                let dict_len = [0usize, 1, 2, 4][usize::from(fhd & 0x03)];
                let fcs_len = match fhd >> 6 {
                    0 => usize::from(single_segment),
                    1 => 2,
                    2 => 4,
                    _ => 8,
                };
                self.checksum_flag = fhd & 0x04 != 0;
                self.header.push(fhd);
                let rest = usize::from(!single_segment) + dict_len + fcs_len;
                if rest == 0 {
                    self.start_frame()?;
                } else {
                    self.step = Step::HeaderRest(rest);
                }
            }
            Step::HeaderRest(_) => {
                self.header.extend_from_slice(unit);
                self.start_frame()?;
            }
            Step::BlockHeader => {
                let raw = u32::from(unit.first().copied().unwrap_or(0))
                    | u32::from(unit.get(1).copied().unwrap_or(0)) << 8
                    | u32::from(unit.get(2).copied().unwrap_or(0)) << 16;
                let last = raw & 1 != 0;
                let size = raw >> 3;
                let content = match (raw >> 1) & 3 {
                    0 | 2 => size,
                    1 => 1,
                    _ => return Err(self.err(ContainerError::Reserved("block type"))),
                };
                if size > MAX_BLOCK {
                    return Err(self.err(ContainerError::BlockTooLarge(size)));
                }
                let checksum = if last && self.checksum_flag { 4 } else { 0 };
                let n = 3 + content as usize + checksum;
                // The block header is re-read by the decoder together with its content.
                self.header.clear();
                self.header.extend_from_slice(unit);
                self.step = Step::Block { n: n - 3, last };
                if n == 3 {
                    // An empty block has nothing more to wait for.
                    return self.act(&[], out);
                }
            }
            Step::Block { last, .. } => {
                let mut block = core::mem::take(&mut self.header);
                block.extend_from_slice(unit);
                let decoded =
                    self.decoder.decode_blocks(&mut block.as_slice(), BlockDecodingStrategy::UptoBlocks(1));
                block.clear();
                self.header = block;
                decoded.map_err(|e| self.err(ContainerError::Corrupt(format!("{e}"))))?;
                let mut down = Downstream { out, err: None, written: 0 };
                let drained = self.decoder.collect_to_writer(&mut down);
                self.decoded = self.decoded.saturating_add(down.written);
                if let Some(e) = down.err {
                    return Err(e);
                }
                drained.map_err(|e| self.err(ContainerError::Corrupt(format!("{e:?}"))))?;
                if let Some(declared) = self.content_size {
                    if self.decoded > declared || (last && self.decoded != declared) {
                        return Err(self.err(ContainerError::Corrupt(format!(
                            "frame content size mismatch: the header declares {declared} bytes, the frame decodes to {}{}",
                            if last { "" } else { "more than " },
                            if last { self.decoded } else { declared }
                        ))));
                    }
                }
                if last {
                    if self.checksum_flag {
                        let stored = self.decoder.get_checksum_from_data();
                        let computed = self.decoder.get_calculated_checksum();
                        if let (Some(stored), Some(computed)) = (stored, computed) {
                            if stored != computed {
                                return Err(self.err(ContainerError::Checksum { stored, computed }));
                            }
                        }
                    }
                    self.frames = self.frames.saturating_add(1);
                    self.step = Step::Magic;
                } else {
                    self.step = Step::BlockHeader;
                }
            }
            Step::Skip(_) => {}
        }
        Ok(())
    }

    fn start_frame(&mut self) -> Result<(), Error> {
        let fhd = self.header.get(4).copied().unwrap_or(0);
        let single_segment = fhd & 0x20 != 0;
        let mut pos = 5usize;
        let window = if single_segment {
            None
        } else {
            let wd = self.header.get(pos).copied().unwrap_or(0);
            pos += 1;
            let log = 10 + u64::from(wd >> 3);
            let base = 1u64 << log;
            Some(base + (base / 8) * u64::from(wd & 7))
        };
        let dict_len = [0usize, 1, 2, 4][usize::from(fhd & 0x03)];
        let mut dict_id = 0u32;
        for (i, b) in self.header.get(pos..pos + dict_len).unwrap_or(&[]).iter().enumerate() {
            dict_id |= u32::from(*b) << (8 * i);
        }
        pos += dict_len;
        if dict_id != 0 {
            return Err(self.err(ContainerError::Dictionary(dict_id)));
        }
        let fcs_bytes = self.header.get(pos..).unwrap_or(&[]);
        let declared = !fcs_bytes.is_empty();
        let mut fcs = 0u64;
        for (i, b) in fcs_bytes.iter().enumerate() {
            fcs |= u64::from(*b) << (8 * i);
        }
        if fcs_bytes.len() == 2 {
            fcs += 256;
        }
        let window = window.unwrap_or(fcs);
        if window > self.max_window {
            return Err(self.err(ContainerError::WindowTooLarge { requested: window, max: self.max_window }));
        }
        self.content_size = declared.then_some(fcs);
        self.decoded = 0;
        let header = core::mem::take(&mut self.header);
        let r = self.decoder.reset(&mut header.as_slice());
        self.header = header;
        r.map_err(|e| self.err(ContainerError::Corrupt(format!("{e}"))))?;
        self.step = Step::BlockHeader;
        Ok(())
    }

    /// Declares the end of input.
    pub fn finish(&mut self) -> Result<(), Error> {
        if self.step != Step::Magic {
            return Err(self.err(ContainerError::Truncated));
        }
        // Fewer than four bytes after a frame: truncated only if they could start a frame.
        let p = self.pending.as_slice();
        let could_start = MAGIC.starts_with(p)
            || matches!(p, [x, rest @ ..] if x & 0xf0 == 0x50 && [0x2a, 0x4d, 0x18].starts_with(rest));
        match (p.is_empty(), could_start) {
            (true, _) => Ok(()),
            (false, true) => Err(self.err(ContainerError::Truncated)),
            (false, false) => Err(self.err(ContainerError::TrailingData)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    /// A frame (1 MiB window, 4-byte `Frame_Content_Size` = `fcs`) of one raw block holding `data`.
    fn raw_frame(fcs: u32, data: &[u8]) -> Vec<u8> {
        let mut f = MAGIC.to_vec();
        f.extend_from_slice(&[0x80, 10 << 3]);
        f.extend_from_slice(&fcs.to_le_bytes());
        let bh = 1u32 | (data.len() as u32) << 3;
        f.extend_from_slice(&bh.to_le_bytes()[..3]);
        f.extend_from_slice(data);
        f
    }

    fn decode(frame: &[u8]) -> Result<Vec<u8>, Error> {
        let mut gate = ZstdGate::new(1 << 20);
        let mut out = Vec::new();
        gate.push(frame, &mut |b: &[u8]| {
            out.extend_from_slice(b);
            Ok(())
        })?;
        gate.finish()?;
        Ok(out)
    }

    #[test]
    fn frame_content_size_must_match_the_content() {
        let data = [7u8; 3000];
        assert_eq!(decode(&raw_frame(3000, &data)).map(|v| v.len()), Ok(3000));
        for fcs in [1024, 2999, 3001, u32::MAX] {
            let err = decode(&raw_frame(fcs, &data)).unwrap_err();
            assert_eq!(err.code(), "zstd_corrupt", "{fcs}: {err}");
            assert!(err.to_string().contains("frame content size mismatch"), "{err}");
        }
    }
}
