//! WAV files of the PBX's own audio (prompts, hold music, voicemail): 8 kHz, 16-bit
//! signed, mono PCM, the linear form of G.711. Other formats are refused with an error
//! that names what is wrong, rather than resampled: prompts are made in this format.

use std::fmt;
use std::io::{Cursor, Seek, Write};

use crate::g711::CLOCK_RATE;

const SPEC: hound::WavSpec = hound::WavSpec {
    channels: 1,
    sample_rate: CLOCK_RATE,
    bits_per_sample: 16,
    sample_format: hound::SampleFormat::Int,
};

/// Why a WAV file cannot be read or written.
#[derive(Debug)]
pub enum WavError {
    /// Not a WAV file (or one that cannot be parsed).
    Malformed(String),
    /// The file ends before the samples its header announces.
    Truncated,
    /// Samples are floating point.
    Float,
    BitsPerSample(u16),
    Channels(u16),
    SampleRate(u32),
    /// Writing failed.
    Io(std::io::Error),
}

impl fmt::Display for WavError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "not a readable WAV file: {why}"),
            Self::Truncated => f.write_str("the WAV file is cut short"),
            Self::Float => f.write_str("floating-point samples, expected 16-bit integer PCM"),
            Self::BitsPerSample(bits) => write!(f, "{bits}-bit samples, expected 16-bit"),
            Self::Channels(channels) => write!(f, "{channels} channels, expected 1 (mono)"),
            Self::SampleRate(rate) => write!(f, "sample rate {rate} Hz, expected {CLOCK_RATE} Hz"),
            Self::Io(e) => write!(f, "writing the WAV file: {e}"),
        }
    }
}

impl std::error::Error for WavError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl WavError {
    fn reading(e: hound::Error) -> Self {
        match e {
            hound::Error::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Self::Truncated
            }
            other => Self::Malformed(other.to_string()),
        }
    }

    fn writing(e: hound::Error) -> Self {
        match e {
            hound::Error::IoError(e) => Self::Io(e),
            other => Self::Io(std::io::Error::other(other.to_string())),
        }
    }
}

/// The samples of an 8 kHz, 16-bit, mono PCM WAV file.
pub fn read(bytes: &[u8]) -> Result<Vec<i16>, WavError> {
    let mut reader = hound::WavReader::new(bytes).map_err(WavError::reading)?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int {
        return Err(WavError::Float);
    }
    if spec.bits_per_sample != 16 {
        return Err(WavError::BitsPerSample(spec.bits_per_sample));
    }
    if spec.channels != 1 {
        return Err(WavError::Channels(spec.channels));
    }
    if spec.sample_rate != CLOCK_RATE {
        return Err(WavError::SampleRate(spec.sample_rate));
    }
    // The header's count is not trusted for the allocation: the bytes bound it.
    let announced = usize::try_from(reader.len()).unwrap_or(usize::MAX);
    let mut samples = Vec::with_capacity(announced.min(bytes.len() / 2));
    for sample in reader.samples::<i16>() {
        // Past a valid header, reading a sample from memory fails only when the bytes
        // run out (hound reports it as an I/O or a format error).
        samples.push(sample.map_err(|_| WavError::Truncated)?);
    }
    Ok(samples)
}

/// A complete WAV file of `samples` (8 kHz, 16-bit, mono).
///
/// # Panics
/// With more than 2³¹ samples (3 days of audio), which RIFF's 32-bit sizes cannot hold.
pub fn write(samples: &[i16]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(44 + 2 * samples.len());
    let mut writer = WavWriter::new(Cursor::new(&mut bytes)).expect("writing to memory");
    writer
        .append(samples)
        .and_then(|()| writer.finalize())
        .expect("a WAV file under 4 GiB");
    bytes
}

/// Writes a WAV file as samples come (a long recording), fixing the header's sizes in
/// [`Self::finalize`].
pub struct WavWriter<W: Write + Seek> {
    inner: hound::WavWriter<W>,
}

impl<W: Write + Seek> WavWriter<W> {
    /// Writes the header to `out`.
    pub fn new(out: W) -> Result<Self, WavError> {
        let inner = hound::WavWriter::new(out, SPEC).map_err(WavError::writing)?;
        Ok(Self { inner })
    }

    pub fn append(&mut self, samples: &[i16]) -> Result<(), WavError> {
        samples
            .iter()
            .try_for_each(|&s| self.inner.write_sample(s))
            .map_err(WavError::writing)
    }

    /// Samples written so far.
    pub fn samples(&self) -> u32 {
        self.inner.len()
    }

    /// Writes the final sizes into the header. (Dropping the writer does too, but
    /// cannot report a failure.)
    pub fn finalize(self) -> Result<(), WavError> {
        self.inner.finalize().map_err(WavError::writing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(spec: hound::WavSpec, frames: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut writer = hound::WavWriter::new(Cursor::new(&mut bytes), spec).unwrap();
        for i in 0..frames * u32::from(spec.channels) {
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Float, _) => writer.write_sample(0.5f32).unwrap(),
                (_, 8) => writer.write_sample(i as i8).unwrap(),
                _ => writer.write_sample(i as i16).unwrap(),
            }
        }
        writer.finalize().unwrap();
        bytes
    }

    #[test]
    fn samples_round_trip() {
        let samples: Vec<i16> = (0..1000)
            .map(|i| (i * 65) as i16)
            .chain([i16::MIN, i16::MAX])
            .collect();
        let bytes = write(&samples);
        assert_eq!(&bytes[..4], b"RIFF");
        assert_eq!(&bytes[8..12], b"WAVE");
        assert_eq!(bytes.len(), 44 + 2 * samples.len());
        assert_eq!(read(&bytes).unwrap(), samples);
        assert_eq!(read(&write(&[])).unwrap(), Vec::<i16>::new());
    }

    #[test]
    fn the_streaming_writer_makes_the_same_file() {
        let samples: Vec<i16> = (0..500).map(|i| i * 3).collect();
        let mut out = Cursor::new(Vec::new());
        let mut writer = WavWriter::new(&mut out).unwrap();
        writer.append(&samples[..200]).unwrap();
        writer.append(&samples[200..]).unwrap();
        assert_eq!(writer.samples(), 500);
        writer.finalize().unwrap();
        assert_eq!(out.into_inner(), write(&samples));
    }

    #[test]
    fn other_formats_are_refused_naming_what_is_wrong() {
        let stereo = hound::WavSpec {
            channels: 2,
            ..SPEC
        };
        let cd = hound::WavSpec {
            sample_rate: 44_100,
            ..SPEC
        };
        let eight_bit = hound::WavSpec {
            bits_per_sample: 8,
            ..SPEC
        };
        let float = hound::WavSpec {
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
            ..SPEC
        };
        assert!(matches!(
            read(&file(stereo, 10)),
            Err(WavError::Channels(2))
        ));
        assert!(matches!(
            read(&file(cd, 10)),
            Err(WavError::SampleRate(44_100))
        ));
        assert!(matches!(
            read(&file(eight_bit, 10)),
            Err(WavError::BitsPerSample(8))
        ));
        assert!(matches!(read(&file(float, 10)), Err(WavError::Float)));
        assert_eq!(
            read(&file(cd, 10)).unwrap_err().to_string(),
            "sample rate 44100 Hz, expected 8000 Hz"
        );
        assert_eq!(
            read(&file(stereo, 10)).unwrap_err().to_string(),
            "2 channels, expected 1 (mono)"
        );
        assert_eq!(
            read(&file(eight_bit, 1)).unwrap_err().to_string(),
            "8-bit samples, expected 16-bit"
        );
    }

    #[test]
    fn garbage_and_cut_files_are_refused() {
        let err = read(b"this is not a wav file at all, not even close").unwrap_err();
        assert!(matches!(err, WavError::Malformed(_)), "{err:?}");
        assert!(err.to_string().starts_with("not a readable WAV file"));
        assert!(read(&[]).is_err());

        let whole = file(SPEC, 100);
        assert_eq!(read(&whole).unwrap().len(), 100);
        // In the samples: an odd cut leaves half a sample.
        for cut in [44 + 50, 44 + 51, whole.len() - 1] {
            let result = read(&whole[..cut]);
            assert!(
                matches!(result, Err(WavError::Truncated)),
                "cut at {cut}: {result:?}"
            );
        }
        // In the header.
        for cut in 0..44 {
            assert!(read(&whole[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn no_input_makes_it_panic() {
        // xorshift: a fixed, dependency-free stream of pseudo-random bytes.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let valid = file(SPEC, 64);
        for round in 0..20_000 {
            let input: Vec<u8> = if round % 2 == 0 {
                // A valid file with a few bytes changed, most often in the header.
                let mut bytes = valid.clone();
                for _ in 0..1 + random() % 4 {
                    let limit = if random() % 4 == 0 { bytes.len() } else { 60 };
                    let at = random() as usize % limit;
                    bytes[at] = random() as u8;
                }
                let keep = bytes.len() - random() as usize % 8;
                bytes.truncate(keep);
                bytes
            } else {
                let len = random() as usize % 96;
                let mut bytes: Vec<u8> = (0..len).map(|_| random() as u8).collect();
                if len >= 12 && random() % 2 == 0 {
                    bytes[..4].copy_from_slice(b"RIFF");
                    bytes[8..12].copy_from_slice(b"WAVE");
                }
                bytes
            };
            let _ = read(&input);
        }
    }
}
