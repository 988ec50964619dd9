"""Keras' batch norm, computed by TensorFlow's fused kernel where it can be (issue 36).

Keras 3's `BatchNormalization` casts a bfloat16 input to float32, computes the mean and variance in separate
passes, then normalises and casts back: on a CPU, several passes over every activation of the network,
forward and backward. TensorFlow's `FusedBatchNormV3` does the statistics and the normalisation in one
kernel (oneDNN's on x86) and reads bfloat16 directly, keeping its statistics in float32. On the CIFAR-10
airbench net, Keras' own layer takes the whole training step 1.16x as long on a 2-core CPU (RESULTS.md:
keras_speed/keras_batch_norm@715c3e7).

`FusedBatchNormalization` is the Keras layer with the same weights, config and results (to float rounding);
only its `call` differs, and only where the fused kernel applies: the TensorFlow backend, a 4-D
channels-last input, no mask, no renormalisation and no synchronised statistics (multi-worker runs). Anywhere
else it is Keras' own layer, so the model still runs, saves and loads on JAX and PyTorch.
"""

import keras


@keras.saving.register_keras_serializable(package="keras_tutorials")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization`, by TensorFlow's fused kernel where it applies (see the module)."""

    def _fusable(self, inputs, mask):
        return (keras.backend.backend() == "tensorflow" and mask is None and not self.renorm
                and not self.synchronized and len(inputs.shape) == 4 and self.axis in (-1, 3))

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        gamma = tf.cast(self.gamma, "float32") if self.scale else tf.ones([channels], "float32")
        beta = tf.cast(self.beta, "float32") if self.center else tf.zeros([channels], "float32")
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, epsilon=self.epsilon, is_training=True)
            # The kernel returns the sample variance (n - 1); Keras' moving variance averages the population
            # variance (n), as `ops.moments` gives it.
            n = tf.cast(tf.size(inputs) // channels, "float32")
            variance = variance * (n - 1.0) / n
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum
                                        + variance * (1.0 - self.momentum))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, mean=tf.cast(self.moving_mean, "float32"),
                variance=tf.cast(self.moving_variance, "float32"), epsilon=self.epsilon, is_training=False)
        return tf.cast(y, self.compute_dtype)
