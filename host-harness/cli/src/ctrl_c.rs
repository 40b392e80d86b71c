//! Ctrl-C in the interactive REPL: it stops the line that is running, not the session.
//!
//! While the REPL runs, SIGINT is caught by a handler that only does what a signal handler
//! may (count the press, write one byte to a pipe); a thread reading that pipe does the rest
//! (interrupt the evaluation). A question waiting on the terminal sees the count change and
//! answers no ([`crate::prompt`]). Outside the REPL, Ctrl-C keeps its default: it ends kosmo.
//! At the prompt itself rustyline reads in raw mode, where Ctrl-C is a key, not a signal.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// Ctrl-C presses caught so far (read by questions waiting on the terminal).
static PRESSES: AtomicU64 = AtomicU64::new(0);

/// The write end of the pipe to the thread, or -1.
static PIPE: AtomicI32 = AtomicI32::new(-1);

/// How many Ctrl-C presses the REPL's handler has caught.
pub fn presses() -> u64 {
    PRESSES.load(Ordering::SeqCst)
}

/// Only async-signal-safe work: atomics and `write(2)` (errno kept, as the handler may
/// interrupt code that is about to read it).
extern "C" fn on_sigint(_: libc::c_int) {
    let errno = std::io::Error::last_os_error().raw_os_error();
    PRESSES.fetch_add(1, Ordering::SeqCst);
    let fd = PIPE.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: writing one byte from a static to a non-blocking socket.
        unsafe { libc::write(fd, b"!".as_ptr().cast(), 1) };
    }
    if let Some(errno) = errno {
        set_errno(errno);
    }
}

#[cfg(target_os = "linux")]
fn set_errno(value: i32) {
    // SAFETY: the calling thread's errno.
    unsafe { *libc::__errno_location() = value };
}

#[cfg(target_os = "macos")]
fn set_errno(value: i32) {
    // SAFETY: the calling thread's errno.
    unsafe { *libc::__error() = value };
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn set_errno(_: i32) {}

/// The REPL's SIGINT handler, installed until dropped (then the previous one is back).
pub struct CtrlC {
    previous: libc::sigaction,
    write_end: Option<UnixStream>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CtrlC {
    /// Catch Ctrl-C, calling `on_press` (on a thread of its own) for each press.
    pub fn install(on_press: impl Fn() + Send + 'static) -> std::io::Result<CtrlC> {
        let (mut read_end, write_end) = UnixStream::pair()?;
        // A handler must never block: a full pipe drops the byte (the count still moves).
        write_end.set_nonblocking(true)?;
        let thread = std::thread::Builder::new()
            .name("kosmo-ctrl-c".into())
            .spawn(move || {
                let mut byte = [0u8; 1];
                while let Ok(1) = read_end.read(&mut byte) {
                    on_press();
                }
            })?;
        PIPE.store(write_end.as_raw_fd(), Ordering::SeqCst);
        // SAFETY: a zeroed sigaction is valid; the handler only does signal-safe work.
        let previous = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigint as *const () as libc::sighandler_t;
            // SA_RESTART: a read the press interrupts resumes rather than failing.
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            let mut previous: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGINT, &action, &mut previous) != 0 {
                PIPE.store(-1, Ordering::SeqCst);
                return Err(std::io::Error::last_os_error());
            }
            previous
        };
        Ok(CtrlC {
            previous,
            write_end: Some(write_end),
            thread: Some(thread),
        })
    }
}

impl Drop for CtrlC {
    fn drop(&mut self) {
        // SAFETY: restoring the action saved by `install`.
        unsafe { libc::sigaction(libc::SIGINT, &self.previous, std::ptr::null_mut()) };
        PIPE.store(-1, Ordering::SeqCst);
        // Closing the write end ends the thread's read.
        if let Some(w) = self.write_end.take() {
            let _ = w.shutdown(std::net::Shutdown::Both);
            drop(w);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
