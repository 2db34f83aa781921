"""Tasks: what is trained on which data, and how it is evaluated (see `base.Task`).

* `language_model`: next-word prediction with carried state (ptb/, rhns/).
* `classification`: text classification (sentiment/).
* `question_answering`: SQuAD extractive QA, official EM/F1 (bidaf/).
"""

from iss_keras.tasks.base import Task
from iss_keras.tasks.language_model import LanguageModelConfig, LanguageModelTask

__all__ = ["LanguageModelConfig", "LanguageModelTask", "Task"]
