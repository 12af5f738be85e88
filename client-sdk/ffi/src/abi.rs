//! The only place of the SDK that touches raw memory handed over by foreign
//! code. Every exported function validates its pointers through these helpers
//! and never dereferences a pointer itself.
//!
//! What the helpers rely on is the contract stated in `outpost.h` for every
//! function: a non-NULL pointer with a length points to at least that many
//! readable (or, for outputs, writable) bytes or elements, properly aligned,
//! not mutated by another thread during the call. NULL is always checked and
//! answered with `OUTPOST_STATUS_NULL_POINTER` (a NULL input with length 0 is an
//! empty string). That contract cannot be checked from here: a dangling pointer
//! from the caller is the caller's undefined behaviour, as in any C API. What
//! the SDK itself hands out (handles) is checked: handles are numbers looked up
//! in a table, so a freed or made-up handle is an error code, not a crash.

use std::ffi::c_char;

use crate::status::{FfiError, FfiResult, OutpostStatus};

fn null(what: &str) -> FfiError {
    FfiError::new(OutpostStatus::NullPointer, format!("{what} is NULL"))
}

/// The `len` bytes at `ptr` (NULL with `len` 0: empty).
pub(crate) fn bytes<'a>(ptr: *const u8, len: usize, what: &str) -> FfiResult<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(null(what));
    }
    if len > isize::MAX as usize {
        return Err(FfiError::new(
            OutpostStatus::InvalidArgument,
            format!("{what}: length {len} is too large"),
        ));
    }
    // SAFETY: ptr is non-NULL and len is within isize::MAX (checked above); by
    // the header's contract it points to len readable bytes that stay
    // unchanged for the duration of the call, which is as long as the returned
    // slice is used (callers copy what they keep).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The UTF-8 string of `len` bytes at `ptr`.
pub(crate) fn str<'a>(ptr: *const u8, len: usize, what: &str) -> FfiResult<&'a str> {
    std::str::from_utf8(bytes(ptr, len, what)?).map_err(|e| {
        FfiError::new(
            OutpostStatus::InvalidUtf8,
            format!("{what} is not valid UTF-8: {e}"),
        )
    })
}

/// The `len` elements at `ptr` (NULL with `len` 0: empty).
pub(crate) fn slice<'a, T>(ptr: *const T, len: usize, what: &str) -> FfiResult<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(null(what));
    }
    if len
        .checked_mul(std::mem::size_of::<T>())
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(FfiError::new(
            OutpostStatus::InvalidArgument,
            format!("{what}: length {len} is too large"),
        ));
    }
    if !ptr.is_aligned() {
        return Err(FfiError::new(
            OutpostStatus::InvalidArgument,
            format!("{what} is misaligned"),
        ));
    }
    // SAFETY: ptr is non-NULL and aligned, the byte size fits isize (checked
    // above); by the header's contract it points to len initialised elements
    // (plain `#[repr(C)]` structs of integers and pointers: every bit pattern
    // is a valid value) that stay unchanged during the call.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Writes `value` to the out-parameter `out`.
pub(crate) fn write<T>(out: *mut T, value: T, what: &str) -> FfiResult<()> {
    if out.is_null() {
        return Err(null(what));
    }
    if !out.is_aligned() {
        return Err(FfiError::new(
            OutpostStatus::InvalidArgument,
            format!("{what} is misaligned"),
        ));
    }
    // SAFETY: out is non-NULL and aligned (checked); by the header's contract
    // it points to writable memory for one T. T is Copy-like plain data (an
    // integer, a handle, a `#[repr(C)]` event) so overwriting without dropping
    // the old value leaks nothing.
    unsafe { out.write(value) };
    Ok(())
}

/// Checks that the out-parameter `out` can be written, before doing work
/// whose result would otherwise be lost.
pub(crate) fn check_out<T>(out: *mut T, what: &str) -> FfiResult<()> {
    if out.is_null() {
        return Err(null(what));
    }
    Ok(())
}

/// Copies `src` into the caller's buffer (`buf`, `cap` bytes) and its length
/// into `*len`. A buffer shorter than `src` gets nothing, `*len` gets the
/// required length and the result is `BufferTooSmall`; `buf` may be NULL when
/// `cap` is 0 (a length query).
pub(crate) fn copy_out(src: &[u8], buf: *mut u8, cap: usize, len: *mut usize, what: &str) -> FfiResult<()> {
    write(len, src.len(), "len")?;
    if src.len() > cap {
        return Err(FfiError::new(
            OutpostStatus::BufferTooSmall,
            format!("{what}: needs {} bytes, the buffer has {cap}", src.len()),
        ));
    }
    if src.is_empty() {
        return Ok(());
    }
    if buf.is_null() {
        return Err(null("buf"));
    }
    // SAFETY: buf is non-NULL and, by the header's contract, points to cap
    // writable bytes; src.len() <= cap (checked); src is memory of this crate
    // and cannot overlap a buffer the caller owns.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), buf, src.len()) };
    Ok(())
}

/// Writes `events` into the caller's array of `cap` elements.
pub(crate) fn write_array<T: Copy>(items: &[T], out: *mut T, cap: usize, what: &str) -> FfiResult<()> {
    if items.is_empty() {
        return Ok(());
    }
    if out.is_null() {
        return Err(null(what));
    }
    if items.len() > cap || !out.is_aligned() {
        return Err(FfiError::new(
            OutpostStatus::InvalidArgument,
            format!("{what}: bad array"),
        ));
    }
    // SAFETY: out is non-NULL and aligned and, by the header's contract, points
    // to cap writable elements; items.len() <= cap (checked); T is Copy plain data.
    unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), out, items.len()) };
    Ok(())
}

/// A static NUL-terminated string as a C string pointer.
pub(crate) fn static_cstr(s: &'static str) -> *const c_char {
    debug_assert!(s.ends_with('\0'));
    s.as_ptr().cast()
}
