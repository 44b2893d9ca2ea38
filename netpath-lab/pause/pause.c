/* The lab's pod sandbox process (what Kubernetes' pause image runs): it holds the pod's namespaces
 * open, reaps children as PID 1 of the pod, and exits on SIGTERM or SIGINT. Built with
 * `cc -static`, so the image needs nothing but this file. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
  (void)sig;
  _exit(0);
}

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, 0, WNOHANG) > 0) {
  }
}

int main(void) {
  signal(SIGINT, stop);
  signal(SIGTERM, stop);
  signal(SIGCHLD, reap);
  for (;;) pause();
}
