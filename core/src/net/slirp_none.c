/* User networking in a libkvmc built without libslirp's headers (the
 * Python wheel's build on a machine without libslirp-dev): refused,
 * saying why. The real backend is slirp.c. */
#include "../error.h"
#include "backend.h"

int net_slirp_open(const struct net_config *cfg, struct vnet *dev,
                   const struct net_backend_ops **ops, void **be)
{
    (void)cfg, (void)dev, (void)ops, (void)be;
    return kvmc_fail(KVMC_ENOTSUP, "net: user networking is not in this libkvmc: it was built "
                     "without libslirp's headers (install libslirp-dev and rebuild; for the "
                     "Python package, pip install it again)");
}
