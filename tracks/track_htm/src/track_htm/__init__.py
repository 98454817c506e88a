"""track_htm: Hierarchical Temporal Memory in vectorised numpy, against an LSTM and week04's
transformer on streams (prediction, anomalies) and on forgetting.

- encoders: ``ScalarEncoder``, ``CyclicEncoder``, ``CategoryEncoder``, ``DateEncoder``,
  ``concat``; ``sdr``: ``overlap``, ``sparsity``, ``add_noise``, ``random_sdr`` ...
- ``SPConfig``, ``SpatialPooler`` (potential pools, permanences, global or local
  ``inhibit``, Hebbian ``learn``, boosting from duty cycles)
- ``TMConfig``, ``TemporalMemory`` (columns of cells, distal segments in dense arrays,
  ``activate_cells``: predicted cells or bursting; learning on active and matching
  segments; punishment of wrong predictions)
- ``raw_anomaly``, ``tail_probability``, ``anomaly_likelihood``, ``AnomalyLikelihood``,
  ``log_likelihood``
- ``HTMConfig``, ``HTMStreamModel`` (encoder -> SP -> TM -> decoder, online), ``SequenceHTM``
- streams: ``Stream``, ``read_nab_csv``, ``read_nab_windows``, ``write_nab``, ``roc_auc``,
  ``synthetic_stream``, ``taxi_like_stream``, ``window_scores``
- baselines: ``LSTMLM``, ``lstm_for_budget``, ``llama_for_budget``, ``train_lm``
  (week03's Trainer), ``predict_stream``, ``sequence_accuracy``
- ``python -m track_htm.experiments --preset tiny|full``: the result tables and plots
"""

from track_htm.anomaly import (
    AnomalyLikelihood,
    anomaly_likelihood,
    log_likelihood,
    raw_anomaly,
    tail_probability,
)
from track_htm.baselines import (
    LSTMLM,
    llama_for_budget,
    lstm_for_budget,
    n_params,
    predict_stream,
    sequence_accuracy,
    sequence_examples,
    stream_examples,
    train_lm,
)
from track_htm.encoders import CategoryEncoder, CyclicEncoder, DateEncoder, ScalarEncoder, concat
from track_htm.htm import HTMConfig, HTMStreamModel, SequenceHTM, quantize
from track_htm.sdr import add_noise, overlap, random_sdr, sparsity, to_dense, to_indices
from track_htm.spatial_pooler import SpatialPooler, SPConfig, inhibit, learn
from track_htm.streams import (
    Stream,
    StreamError,
    read_nab_csv,
    read_nab_windows,
    roc_auc,
    synthetic_stream,
    taxi_like_stream,
    window_mask,
    window_scores,
    write_nab,
)
from track_htm.temporal_memory import TemporalMemory, TMConfig, activate_cells

__all__ = [
    "ScalarEncoder", "CyclicEncoder", "CategoryEncoder", "DateEncoder", "concat",
    "overlap", "sparsity", "add_noise", "random_sdr", "to_dense", "to_indices",
    "SPConfig", "SpatialPooler", "inhibit", "learn",
    "TMConfig", "TemporalMemory", "activate_cells",
    "raw_anomaly", "tail_probability", "anomaly_likelihood", "AnomalyLikelihood", "log_likelihood",
    "HTMConfig", "HTMStreamModel", "SequenceHTM", "quantize",
    "Stream", "StreamError", "read_nab_csv", "read_nab_windows", "write_nab", "synthetic_stream",
    "taxi_like_stream", "window_mask", "window_scores", "roc_auc",
    "LSTMLM", "lstm_for_budget", "llama_for_budget", "n_params", "train_lm", "predict_stream",
    "sequence_accuracy", "sequence_examples", "stream_examples",
]
