/* rsbox-init: the pid 1 of `rsbox run --init`, and nothing else.
 *
 * Why C and not Python: pid 1 is in plain sight of everything in the container. A Python
 * pid 1 shows the host's interpreter in /proc/1/exe and the host-side argv in
 * /proc/1/cmdline (world-readable), and container root may ptrace it. rsbox binds this
 * small static binary (images such as a busybox-only one have no libc) at /dev/init and
 * exec()s it with a clean argv and environment; it makes itself non-dumpable first, so
 * that container root without CAP_SYS_PTRACE cannot ptrace it nor read its
 * /proc/PID/environ, exe, maps or mem. Then it does only an init's job: run one command,
 * forward signals to it, reap every orphan, exit with the command's status. The design
 * follows tini's (no code from it): signals are blocked and taken with sigtimedwait(),
 * never by asynchronous handlers.
 *
 * Usage: rsbox-init EXE ARGV0 [ARG...]
 *   EXE is the path rsbox resolved (no PATH search here), run with ARGV0 ARG...
 * Exit status: the command's, 128+N if signal N killed it, 126/127 if it could not be
 * executed (as a shell), 125 when rsbox-init itself fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int fail(const char *what)
{
	fprintf(stderr, "rsbox-init: %s: %s\n", what, strerror(errno));
	return 125;
}

static int exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

int main(int argc, char **argv)
{
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return fail("prctl(PR_SET_DUMPABLE)");
	/* ps shows what this is, whatever path it was executed from (/dev/init). */
	(void)prctl(PR_SET_NAME, "rsbox-init", 0, 0, 0);
	if (argc < 3) {
		fputs("usage: rsbox-init EXE ARGV0 [ARG...]\n", stderr);
		return 125;
	}

	/* Default dispositions: an inherited SIG_IGN for SIGCHLD would make the kernel reap
	 * our children itself. Then block every signal but the faults (ours, not messages
	 * to forward), before fork(), so that none is lost before sigtimedwait(). */
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	for (int s = 1; s < NSIG; s++)
		sigaction(s, &dfl, NULL);  /* EINVAL for SIGKILL, SIGSTOP, libc's own: fine */
	static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS};
	sigset_t set, none;
	sigfillset(&set);
	sigemptyset(&none);
	for (size_t k = 0; k < sizeof faults / sizeof faults[0]; k++)
		sigdelset(&set, faults[k]);
	if (sigprocmask(SIG_SETMASK, &set, NULL) < 0)
		return fail("sigprocmask");

	pid_t child = fork();
	if (child < 0)
		return fail("fork");
	if (child == 0) {
		sigprocmask(SIG_SETMASK, &none, NULL);
		execve(argv[1], &argv[2], environ);
		int err = errno;
		fprintf(stderr, "rsbox-init: %s: %s\n", argv[1], strerror(err));
		_exit(err == ENOENT || err == ENOTDIR ? 127 : 126);
	}

	for (;;) {
		int status;
		pid_t pid;
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
			if (pid == child)
				return exit_code(status);
		/* SIGCHLD stays pending while blocked: a child that exits after the loop above
		 * wakes this wait; the timeout is only a second line of defence. */
		const struct timespec tick = {1, 0};
		int sig = sigtimedwait(&set, NULL, &tick);
		if (sig < 0 || sig == SIGCHLD)
			continue;
		kill(child, sig);
	}
}
