-- Rollup sums are kept multiplied by 2^-64 (see domain::metrics::SUM_SCALE): a series holds at
-- most 2^53 points (the largest step is 2^53 - 1), so no sum of finite values can overflow
-- float8 any more, however large the values. Values below 2^-958 in magnitude count as 0.
alter table metric_rollups rename column sum to scaled_sum;
update metric_rollups
   set scaled_sum = case when abs(scaled_sum) < 4.1045368012983762493360292891651318740876212273232115972208904815389790160272381933726433350337965317436302474815405473249021302383735508721345443971011346029315501269992254798244805535994709231684392e-289
                         then 0 else scaled_sum * 5.42101086242752217003726400434970855712890625e-20 end;
