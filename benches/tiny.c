/* The program every fork+exec server in the load benchmark runs: one fixed
 * reply on stdout, then exit. Built with `cc -O2 -static` so that exec
 * costs no dynamic loading. */
#include <unistd.h>

static const char reply[] = "superd-bench tiny reply\n";

int main(void)
{
	ssize_t off = 0, n;
	while (off < (ssize_t)sizeof reply - 1) {
		n = write(1, reply + off, sizeof reply - 1 - off);
		if (n <= 0)
			return 1;
		off += n;
	}
	return 0;
}
