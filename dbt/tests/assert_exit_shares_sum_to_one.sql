-- Every trade of an exit strategy ends for exactly one reason (the strategy itself, the stop-loss, the
-- take-profit or the maximum hold): the four shares are non-negative and sum to 1 on every segment
-- with trades. Anything else means exit_metrics lost or double-counted trades.
select key, segment, strategy, exit_agent, exit_stop_loss, exit_take_profit, exit_time
from {{ ref('stg_exit_metrics') }}
where trades > 0
  and (
      least(exit_agent, exit_stop_loss, exit_take_profit, exit_time) < 0
      or abs(exit_agent + exit_stop_loss + exit_take_profit + exit_time - 1) > 1e-9
      or (exit_agent + exit_stop_loss + exit_take_profit + exit_time) is null
  )
