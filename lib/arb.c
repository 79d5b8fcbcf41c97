/*
 * arb.c - built-in arbitration policies for exclusive (endpoint, class) pairs.
 */
#include <string.h>
#include "vmsig/vmsig_core.h"

vmsig_arb_decision vmsig_arb_deny(void *opaque, uint32_t endpoint, uint32_t cls,
                                  const vmsig_grant *incumbent, const vmsig_grant *contender)
{
    return VMSIG_ARB_DENY;
}

vmsig_arb_decision vmsig_arb_preempt(void *opaque, uint32_t endpoint, uint32_t cls,
                                     const vmsig_grant *incumbent, const vmsig_grant *contender)
{
    return VMSIG_ARB_PREEMPT;
}

vmsig_arb_decision vmsig_arb_priority(void *opaque, uint32_t endpoint, uint32_t cls,
                                      const vmsig_grant *incumbent, const vmsig_grant *contender)
{
    /* Ties keep the owner: taking over must be earned, not raced for. */
    if (incumbent && contender && contender->priority > incumbent->priority) {
        return VMSIG_ARB_PREEMPT;
    }
    return VMSIG_ARB_DENY;
}

vmsig_arb_policy vmsig_arb_policy_by_name(const char *name)
{
    static const struct {
        const char *name;
        vmsig_arb_policy fn;
    } policies[] = {
        { "deny", vmsig_arb_deny },
        { "preempt", vmsig_arb_preempt },
        { "priority", vmsig_arb_priority },
    };

    if (!name) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof(policies) / sizeof(policies[0]); i++) {
        if (strcmp(name, policies[i].name) == 0) {
            return policies[i].fn;
        }
    }
    return NULL;
}
