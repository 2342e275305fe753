/* Built against an installed kvmc, through pkg-config and through CMake's
 * find_package, to prove both work. */
#include <kvmc/kvmc.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    kvmc_config *cfg = NULL;
    if (kvmc_config_new(&cfg) != KVMC_OK)
        return 1;
    int bad = kvmc_config_set_cpus(cfg, 0);
    kvmc_config_free(cfg);
    printf("consumer: libkvmc %s, header %s, cpus 0 -> %s\n", kvmc_version_string(),
           KVMC_VERSION_STRING, kvmc_strerror(bad));
    return strcmp(kvmc_version_string(), KVMC_VERSION_STRING) != 0 || bad != KVMC_EINVAL;
}
