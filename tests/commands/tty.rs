//! The interactive paths, on a real pseudo-terminal: the token prompt of `login` does not
//! echo, and destructive commands ask first (only `y`/`yes` proceeds).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::support::{BIN, TestRepo, TestServer};

/// Runs `args` with a new pty as its controlling terminal and stdin/stdout/stderr; when
/// `prompt` appears in the output, types `answer` and a newline (after echo is off when
/// `hidden`). Returns the exit status
/// and everything the terminal showed.
fn in_pty(
    args: &[&str],
    env: &[(&str, &str)],
    prompt: &str,
    answer: &str,
    hidden: bool,
) -> (ExitStatus, String) {
    let (mut master, mut slave) = (0, 0);
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    let slave = unsafe { File::from_raw_fd(slave) };
    let mut master = unsafe { File::from_raw_fd(master) };
    let mut child = {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("NO_COLOR", "1")
            .env_remove("MELTANO_CLOUD_API_URL")
            .env_remove("MELTANO_CLOUD_TOKEN")
            .env_remove("MELTANO_CLOUD_ORG")
            .env_remove("MELTANO_CLOUD_PROJECT")
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave.try_clone().unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn().unwrap()
        // The Command and its copies of the slave end are dropped here.
    };
    drop(slave);
    let mut seen = Vec::new();
    let mut answered = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    loop {
        assert!(
            Instant::now() < deadline,
            "timed out; terminal showed: {}",
            String::from_utf8_lossy(&seen)
        );
        // EIO once the child has closed the terminal: the end of its output.
        let n = match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        seen.extend_from_slice(&buf[..n]);
        if !answered && String::from_utf8_lossy(&seen).contains(prompt) {
            if hidden {
                // Type only once the program has turned echo off, as a person would.
                use std::os::fd::AsRawFd;
                loop {
                    let mut t: libc::termios = unsafe { std::mem::zeroed() };
                    let rc = unsafe { libc::tcgetattr(master.as_raw_fd(), &mut t) };
                    if rc == 0 && t.c_lflag & libc::ECHO == 0 {
                        break;
                    }
                    assert!(Instant::now() < deadline, "echo was never turned off");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            master.write_all(format!("{answer}\n").as_bytes()).unwrap();
            answered = true;
        }
    }
    let status = child.wait().unwrap();
    (status, String::from_utf8_lossy(&seen).replace('\r', ""))
}

#[test]
fn login_prompts_without_echo_and_deletes_ask_first() {
    let repo = TestRepo::new();
    let server = TestServer::start_sqlite();
    let (_org, _pid, owner) = server.bootstrap(&repo);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    let config = config.to_str().unwrap();
    let env = [("MELTANO_CLOUD_CONFIG_PATH", config)];

    let (status, screen) = in_pty(
        &["login", "--api-url", server.url()],
        &env,
        "API token: ",
        &owner,
        true,
    );
    assert!(status.success(), "{screen}");
    assert!(!screen.contains(&owner), "the token was echoed: {screen}");
    assert!(screen.contains("Logged in to"), "{screen}");
    assert!(std::fs::read_to_string(config).unwrap().contains(&owner));

    let project = [
        ("MELTANO_CLOUD_CONFIG_PATH", config),
        ("MELTANO_CLOUD_PROJECT", "jaffle-shop"),
    ];
    let create = Command::new(BIN)
        .args([
            "deployment",
            "create",
            "--name",
            "qa",
            "--environment",
            "dev",
            "--git-rev",
            "main",
        ])
        .envs(project)
        .env_remove("MELTANO_CLOUD_API_URL")
        .env_remove("MELTANO_CLOUD_TOKEN")
        .output()
        .unwrap();
    assert!(
        create.status.success(),
        "{}",
        String::from_utf8_lossy(&create.stderr)
    );

    // A secret typed at the prompt is not echoed either.
    let (status, screen) = in_pty(
        &["config", "env", "set", "--key", "TYPED_SECRET"],
        &project,
        "Value of TYPED_SECRET: ",
        "typed-secret-value",
        true,
    );
    assert!(status.success(), "{screen}");
    assert!(
        !screen.contains("typed-secret-value"),
        "the value was echoed: {screen}"
    );
    assert!(screen.contains("Set secret `TYPED_SECRET`."), "{screen}");

    let question = "Only `y` or `yes` proceeds: ";
    let delete = ["deployment", "delete", "--name", "qa"];
    let (status, screen) = in_pty(&delete, &project, question, "no", false);
    assert!(!status.success(), "{screen}");
    assert!(
        screen.contains("Do you really want to delete deployment `qa`?"),
        "{screen}"
    );
    assert!(screen.contains("cancelled"), "{screen}");
    let (status, screen) = in_pty(&delete, &project, question, "yes", false);
    assert!(status.success(), "{screen}");
    assert!(screen.contains("Deleted deployment `qa`."), "{screen}");
}
