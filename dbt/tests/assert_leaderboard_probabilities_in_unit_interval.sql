-- Every leaderboard row's DSR, PSR, PBO and permutation p-value is a probability in [0, 1] (NULL =
-- missing evidence, flagged by a warning on `dsr`). A DSR of 1.5 means the significance code is broken.
select experiment, dsr, psr, pbo, perm_pvalue
from {{ ref('mart_checkpoint_leaderboard') }}
where dsr < 0 or dsr > 1
   or psr < 0 or psr > 1
   or pbo < 0 or pbo > 1
   or perm_pvalue < 0 or perm_pvalue > 1
