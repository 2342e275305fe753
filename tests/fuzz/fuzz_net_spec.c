/* libFuzzer target for the network description parser (--net and
 * kvmc_config_add_net): any text must give a config within bounds or a
 * clean error, never a crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net_spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    struct net_config n;
    if (net_spec_parse(text, &n) == 0) {
        if (n.nforwards > NET_MAX_FORWARDS || (n.tap && !n.ifname[0]) ||
            strnlen(n.ifname, sizeof(n.ifname)) == sizeof(n.ifname))
            abort();
        for (unsigned i = 0; i < n.nforwards; i++)
            if (!n.forwards[i].host_port || !n.forwards[i].guest_port)
                abort();
    }
    free(text);
    return 0;
}
