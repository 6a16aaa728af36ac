//! File names as they cross the gate: UTF-8 bytes in a shared buffer, checked before
//! the file system sees them. Only the root directory is served, so a name is one path
//! component.

/// Longest name in bytes (FAT long names hold 255 UTF-16 units).
pub const MAX_NAME: usize = 255;

/// Why a name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadName {
    Empty,
    TooLong,
    NotUtf8,
    /// A character FAT does not allow in a name, or a path separator.
    Character(char),
    /// `.` or `..`, or only dots and spaces.
    Reserved,
}

/// Checks `bytes` as a file name in the root directory and returns it as text.
pub fn check(bytes: &[u8]) -> Result<&str, BadName> {
    if bytes.is_empty() {
        return Err(BadName::Empty);
    }
    if bytes.len() > MAX_NAME {
        return Err(BadName::TooLong);
    }
    let name = core::str::from_utf8(bytes).map_err(|_| BadName::NotUtf8)?;
    if let Some(c) = name
        .chars()
        .find(|&c| c < ' ' || c == '\u{7f}' || "/\\:*?\"<>|".contains(c))
    {
        return Err(BadName::Character(c));
    }
    if name.chars().all(|c| c == '.' || c == ' ') {
        return Err(BadName::Reserved);
    }
    Ok(name)
}

/// Checks a byte offset or length from the gate (an `i64` word) and returns it as a
/// `u64`, or `None` if it is negative.
pub fn offset(value: i64) -> Option<u64> {
    u64::try_from(value).ok()
}

/// Whether a file called `name` (already through [`check`]) can be created: FAT long
/// names are UCS-2, so no character beyond U+FFFF; and the first character must be
/// ASCII, because lamfat's short-name generator slices the name at byte 1 and panics
/// inside a multi-byte character. Both file systems refuse such a creation with
/// `E_INVALID`; a file of such a name that exists (made by the host's tools) still
/// opens.
pub fn creatable(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii()) && name.chars().all(|c| c <= '\u{ffff}')
}
