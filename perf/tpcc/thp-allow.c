/*
 * LD_PRELOAD shim for the TPC-C THP scenarios (perf/src/tpcc/thp_allow.rs).
 *
 * mariadbd calls prctl(PR_SET_THP_DISABLE, 1) at start when THP is not
 * `always`, which makes the kernel refuse every MADV_COLLAPSE on it: no
 * tool can promote its memory to huge pages. MySQL, which the etmem
 * presentation measured, does not. For the THP scenarios only, this shim
 * turns that one call into a no-op, so mariadbd's memory is as eligible as
 * mysqld's; every other prctl goes to the kernel unchanged.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int prctl(int option, ...)
{
	va_list ap;
	unsigned long a2, a3, a4, a5;

	va_start(ap, option);
	a2 = va_arg(ap, unsigned long);
	a3 = va_arg(ap, unsigned long);
	a4 = va_arg(ap, unsigned long);
	a5 = va_arg(ap, unsigned long);
	va_end(ap);
	if (option == PR_SET_THP_DISABLE)
		return 0;
	return (int)syscall(SYS_prctl, option, a2, a3, a4, a5);
}
