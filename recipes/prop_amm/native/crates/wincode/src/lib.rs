//! Native stand-in of the `wincode` APIs a Prop AMM strategy uses (docs/recipes.md,
//! "prop_amm"): `#[derive(SchemaRead)]` / `#[derive(SchemaWrite)]`, `deserialize`,
//! `serialize`. The layout is wincode's (bincode's): fixed-width little-endian integers, bools
//! as one byte, arrays element by element, struct fields in order; trailing bytes are ignored.

pub use wincode_derive::{SchemaRead, SchemaWrite};

/// Why bytes could not be read as a value.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum ReadError {
    /// The input ended before the value did.
    UnexpectedEnd,
    /// A byte is not a valid value (a bool other than 0 or 1).
    InvalidValue,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::UnexpectedEnd => f.write_str("unexpected end of input"),
            ReadError::InvalidValue => f.write_str("invalid value"),
        }
    }
}

impl std::error::Error for ReadError {}

pub type ReadResult<T> = Result<T, ReadError>;
pub type WriteResult<T> = Result<T, ReadError>;
pub type Error = ReadError;

/// A cursor over the input bytes.
pub struct Reader<'de> {
    bytes: &'de [u8],
    pos: usize,
}

impl<'de> Reader<'de> {
    pub fn new(bytes: &'de [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> ReadResult<&'de [u8]> {
        let end = self.pos.checked_add(n).ok_or(ReadError::UnexpectedEnd)?;
        if end > self.bytes.len() {
            return Err(ReadError::UnexpectedEnd);
        }
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }
}

/// A type that can be read from wincode bytes.
pub trait SchemaRead<'de>: Sized {
    fn read(reader: &mut Reader<'de>) -> ReadResult<Self>;

    /// Fill `out` with consecutive values (bytes are copied at once).
    #[inline]
    fn read_into(reader: &mut Reader<'de>, out: &mut [Self]) -> ReadResult<()> {
        for slot in out.iter_mut() {
            *slot = Self::read(reader)?;
        }
        Ok(())
    }
}

/// A type that can be written as wincode bytes.
pub trait SchemaWrite {
    fn write(&self, out: &mut Vec<u8>);
}

macro_rules! int_schema {
    ($($ty:ty),*) => {$(
        impl<'de> SchemaRead<'de> for $ty {
            #[inline]
            fn read(reader: &mut Reader<'de>) -> ReadResult<Self> {
                let bytes = reader.take(std::mem::size_of::<$ty>())?;
                let mut buf = [0u8; std::mem::size_of::<$ty>()];
                buf.copy_from_slice(bytes);
                Ok(<$ty>::from_le_bytes(buf))
            }
        }
        impl SchemaWrite for $ty {
            #[inline]
            fn write(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}

impl<'de> SchemaRead<'de> for u8 {
    #[inline]
    fn read(reader: &mut Reader<'de>) -> ReadResult<Self> {
        Ok(reader.take(1)?[0])
    }

    #[inline]
    fn read_into(reader: &mut Reader<'de>, out: &mut [Self]) -> ReadResult<()> {
        out.copy_from_slice(reader.take(out.len())?);
        Ok(())
    }
}

impl SchemaWrite for u8 {
    #[inline]
    fn write(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
}

int_schema!(u16, u32, u64, u128, i8, i16, i32, i64, i128, f32, f64);

impl<'de> SchemaRead<'de> for bool {
    fn read(reader: &mut Reader<'de>) -> ReadResult<Self> {
        match reader.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(ReadError::InvalidValue),
        }
    }
}

impl SchemaWrite for bool {
    fn write(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl<'de, T: SchemaRead<'de> + Copy + Default, const N: usize> SchemaRead<'de> for [T; N] {
    #[inline]
    fn read(reader: &mut Reader<'de>) -> ReadResult<Self> {
        let mut out = [T::default(); N];
        T::read_into(reader, &mut out)?;
        Ok(out)
    }
}

impl<T: SchemaWrite, const N: usize> SchemaWrite for [T; N] {
    fn write(&self, out: &mut Vec<u8>) {
        for item in self {
            item.write(out);
        }
    }
}

/// Read a `T` from the start of `bytes`.
#[inline]
pub fn deserialize<'de, T: SchemaRead<'de>>(bytes: &'de [u8]) -> ReadResult<T> {
    T::read(&mut Reader::new(bytes))
}

/// Write `value` as wincode bytes.
pub fn serialize<T: SchemaWrite + ?Sized>(value: &T) -> WriteResult<Vec<u8>> {
    let mut out = Vec::new();
    value.write(&mut out);
    Ok(out)
}

/// Write `value` into the start of `dst`; an error when it does not fit.
pub fn serialize_into<T: SchemaWrite + ?Sized>(dst: &mut [u8], value: &T) -> WriteResult<()> {
    let bytes = serialize(value)?;
    if bytes.len() > dst.len() {
        return Err(ReadError::UnexpectedEnd);
    }
    dst[..bytes.len()].copy_from_slice(&bytes);
    Ok(())
}
