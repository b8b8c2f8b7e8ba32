/* finit PATH: prints PATH's SELinux label, then loads PATH with a plain
 * finit_module(2) and no parameters, as kmod's insmod does for an
 * uncompressed module. Exit 0 loaded, 1 refused (the errno is printed),
 * 2 usage or open error. The guest's busybox insmod cannot stand in: it
 * falls back to init_module when finit_module fails. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char label[256] = "(none)";
	ssize_t n;
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: finit PATH\n");
		return 2;
	}
	n = getxattr(argv[1], "security.selinux", label, sizeof(label) - 1);
	if (n > 0)
		label[n] = '\0';
	printf("%s: label %s\n", argv[1], label);
	fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		perror(argv[1]);
		return 2;
	}
	if (syscall(SYS_finit_module, fd, "", 0) != 0) {
		int e = errno;
		printf("finit_module %s: %s (errno %d)\n", argv[1], strerror(e), e);
		return 1;
	}
	printf("finit_module %s: loaded\n", argv[1]);
	return 0;
}
