/* Runs the kvmc command as a user would, for the CLI and jail tests. */
#ifndef KVMC_TEST_CLI_RUN_H
#define KVMC_TEST_CLI_RUN_H

struct cli_result {
    int status; /* exit status, or 128 + signal */
    char out[16384];
    char err[4096];
};

/* Runs argv (argv[0] is the program) with stdin from /dev/null and waits;
 * stdout and stderr are captured into r. */
void cli_run(struct cli_result *r, char *const argv[]);
/* The same, with prepare() run in the child just before exec (it may
 * _exit(126) after printing why to stderr). */
void cli_run_prepared(struct cli_result *r, char *const argv[], void (*prepare)(void));

#endif
