"""Live suggestions from a trained run: the saved feature workflow applied to a raw history, then the model."""

from cmdrec.serving.predict import Predictor, Recommendation

__all__ = ["Predictor", "Recommendation"]
