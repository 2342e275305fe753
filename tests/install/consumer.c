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
    /* The versioned structs a caller fills start from their INIT macros. */
    kvmc_device_ops ops = KVMC_DEVICE_OPS_INIT;
    kvmc_regs regs = KVMC_REGS_INIT;
    if (ops.version != KVMC_DEVICE_OPS_VERSION || regs.version != KVMC_REGS_VERSION)
        return 1;
    printf("consumer: libkvmc %s, header %s, cpus 0 -> %s\n", kvmc_version_string(),
           KVMC_VERSION_STRING, kvmc_strerror(bad));
    return strcmp(kvmc_version_string(), KVMC_VERSION_STRING) != 0 || bad != KVMC_EINVAL;
}
