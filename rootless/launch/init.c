/* rsbox-init: the pid 1 of `rsbox run --init`, and the wrapper of `rsbox exec` (-s).
 *
 * Why C and not Python: pid 1 is in plain sight of everything in the container. A Python
 * pid 1 shows the host's interpreter in /proc/1/exe and the host-side argv in
 * /proc/1/cmdline (world-readable), and container root may ptrace it. rsbox exec()s this
 * small static binary (images such as a busybox-only one have no libc) with a clean argv and
 * environment; it makes itself non-dumpable first, so that container root without
 * CAP_SYS_PTRACE cannot ptrace it nor read its /proc/PID/environ, exe, maps or mem.
 * Then it does only an init's job: run one command, forward signals to it, reap every
 * orphan, exit with the command's status. The design follows tini's (no code from it):
 * signals are blocked and taken with sigtimedwait(), never by asynchronous handlers.
 *
 * Usage: rsbox-init [-s] [-g] EXE ARGV0 [ARG...]
 *   EXE is an absolute path (rsbox resolved it: no PATH search), run with ARGV0 ARG...
 *   -g  give the command a process group of its own (and the terminal, if ours had it)
 *       and forward signals to that group; by default to the command only, as tini.
 *   -s  exec wrapper (`rsbox exec`): not pid 1, so become a child subreaper; when the
 *       parent (outside the container's pid namespace) dies, SIGKILL the whole subtree
 *       and exit 137. When the command exits, exit at once: its descendants keep
 *       running in the container, as with `docker exec`.
 * Exit status: the command's, 128+N if signal N killed it, 126/127 if it could not be
 * executed (as a shell), 125 when rsbox-init itself fails.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* -s: the parent-death signal. Catchable (SIGKILL would leave the subtree behind) and
 * rarely used by programs; one that does not mean the parent's death is forwarded. */
#define DEATH_SIG SIGRTMAX

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

/* SIGKILL every direct child of ours (orphans reparented to us included); return how
 * many, or -1 if /proc is missing or of another pid namespace (its pids are not ours). */
static int kill_children(void)
{
	char path[300], stat[512];
	ssize_t len = readlink("/proc/self", path, sizeof path - 1);
	if (len < 0 || (path[len] = '\0', atoi(path) != getpid()))
		return -1;
	int pid, count = 0;
	FILE *f = fopen("/proc/thread-self/children", "r");
	if (f) {
		for (; fscanf(f, "%d", &pid) == 1; count++)
			kill(pid, SIGKILL);
		fclose(f);
		return count;
	}
	/* Kernels without CONFIG_PROC_CHILDREN: field 4 of /proc/PID/stat is the ppid. */
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
		if (!(f = fopen(path, "r")))
			continue;
		size_t n = fread(stat, 1, sizeof stat - 1, f);
		fclose(f);
		stat[n] = '\0';
		char *comm_end = strrchr(stat, ')');  /* comm may hold spaces and ')' */
		int ppid;
		if (comm_end && sscanf(comm_end + 1, " %*c %d", &ppid) == 1 && ppid == getpid())
			count += kill(atoi(e->d_name), SIGKILL) == 0;
	}
	if (d)
		closedir(d);
	return count;
}

/* The parent is gone: kill the subtree, children first; as each dies its own children
 * are reparented to us (subreaper), so list again until nothing is left to wait for.
 * Polls rather than block in waitpid(), and gives up after a second of children that
 * no listing shows: rsbox-init never hangs. */
static int kill_tree(void)
{
	const struct timespec pause = {0, 10 * 1000 * 1000};
	for (int unseen = 0;; nanosleep(&pause, NULL)) {
		int listed = kill_children();
		pid_t pid;
		while ((pid = waitpid(-1, NULL, WNOHANG)) > 0)
			;
		if (pid < 0 && errno == ECHILD)
			return 137;
		if (listed <= 0 && ++unseen == 100) {
			fputs("rsbox-init: cannot find the children to kill in /proc\n", stderr);
			return 137;
		}
	}
}

int main(int argc, char **argv)
{
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return fail("prctl(PR_SET_DUMPABLE)");
	/* ps shows what this is, whatever path it was executed from (/dev/init). */
	(void)prctl(PR_SET_NAME, "rsbox-init", 0, 0, 0);
	pid_t ppid = getppid();  /* before anything else: see the -s check below */
	int group = 0, wrapper = 0, i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {  /* EXE is absolute: no "--" needed */
		if (strcmp(argv[i], "-g") == 0)
			group = 1;
		else if (strcmp(argv[i], "-s") == 0)
			wrapper = 1;
		else
			break;
	}
	if (argc - i < 2 || argv[i][0] == '-') {
		fputs("usage: rsbox-init [-s] [-g] EXE ARGV0 [ARG...]\n", stderr);
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

	if (wrapper) {
		if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0 ||
		    prctl(PR_SET_PDEATHSIG, DEATH_SIG, 0, 0, 0) < 0)
			return fail("prctl");
		/* Did the parent die before the signal was armed? Visible only when the parent
		 * is in our pid namespace: one outside it reads as 0 before and after (orphans
		 * go to a reaper outside too), so rsbox exec must arm DEATH_SIG itself before
		 * execve (it survives execve) and check for its parent in its own way. */
		if (getppid() != ppid)
			return 137;
	}

	pid_t child = fork();
	if (child < 0)
		return fail("fork");
	if (child == 0) {
		if (group) {
			int foreground = tcgetpgrp(STDIN_FILENO) == getpgrp();
			setpgid(0, 0);
			if (foreground)  /* SIGTTOU is still blocked here, so this is allowed */
				tcsetpgrp(STDIN_FILENO, getpid());
		}
		sigprocmask(SIG_SETMASK, &none, NULL);
		execve(argv[i], &argv[i + 1], environ);
		int err = errno;
		fprintf(stderr, "rsbox-init: %s: %s\n", argv[i], strerror(err));
		_exit(err == ENOENT || err == ENOTDIR ? 127 : 126);
	}
	if (group)
		setpgid(child, child);  /* also here: a signal may come before the child runs */

	for (;;) {
		int status;
		pid_t pid;
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
			if (pid == child)
				return exit_code(status);
		/* SIGCHLD stays pending while blocked: a child that exits after the loop above
		 * wakes this wait; the timeout is only a second line of defence. */
		siginfo_t info;
		const struct timespec tick = {1, 0};
		int sig = sigtimedwait(&set, &info, &tick);
		if (sig < 0 || sig == SIGCHLD)
			continue;
		/* The kernel sends the parent-death signal as SI_USER from the dying parent,
		 * whose pid reads as 0 here when it lived outside our pid namespace. */
		if (wrapper && sig == DEATH_SIG && info.si_code == SI_USER && info.si_pid == ppid &&
		    (ppid == 0 || getppid() != ppid))
			return kill_tree();
		kill(group ? -child : child, sig);
	}
}
