"""Owns measuring how steady the video points are (tools/bench_jitter.py): clips made from real
still faces moved along a known smooth path (shift, zoom, a small roll) with sensor-like noise
and a JPEG re-encoding per frame, so every frame's true points are known; and the measures:

- jitter: the frame-to-frame motion of each point minus the true motion, over the inter-ocular
  distance, averaged over points and frames (0 for points that move exactly with the face);
- lag: the delay, in frames, of a track behind the true one (the shift of the true path, found
  to a tenth of a frame, that brings the two closest);
- error: the mean point error over the inter-ocular distance.
"""
import cv2
import numpy as np

PATHS = ("still", "moving")
FRAME_SIZE = (640, 480)
NOISE = 3.0  # grey levels, per pixel and frame
JPEG_QUALITY = 85


def path_transform(path, t, frames):
    """(dx, dy, zoom, roll degrees) of the face at frame t of `frames`."""
    if path == "still":
        return 0.0, 0.0, 1.0, 0.0
    phase = 2 * np.pi * t / frames
    return 120 * np.sin(phase), 40 * np.sin(2 * phase), 1 + 0.15 * np.sin(phase), 6 * np.sin(phase)


def clip(face, points, path, frames, rng):
    """([BGR frames], (frames, 5, 2) true points): the face image set in the middle of a blurred
    random background, moved along `path`, with noise and JPEG re-encoding."""
    width, height = FRAME_SIZE
    background = cv2.GaussianBlur(rng.integers(40, 210, (height, width, 3), dtype=np.uint8), (41, 41), 12)
    fh, fw = face.shape[:2]
    centre = np.array([(fw - 1) / 2.0, (fh - 1) / 2.0])
    place = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    mask = np.full((fh, fw), 255, np.uint8)
    out, truth = [], []
    for t in range(frames):
        dx, dy, zoom, roll = path_transform(path, t, frames)
        matrix = cv2.getRotationMatrix2D(tuple(centre), roll, zoom)
        matrix[:, 2] += place + [dx, dy] - centre
        warped = cv2.warpAffine(face, matrix, (width, height), flags=cv2.INTER_LINEAR)
        inside = cv2.warpAffine(mask, matrix, (width, height), flags=cv2.INTER_NEAREST) > 0
        frame = background.copy()
        frame[inside] = warped[inside]
        frame = np.clip(frame + rng.normal(0, NOISE, frame.shape), 0, 255).astype(np.uint8)
        frame = cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1], cv2.IMREAD_COLOR)
        out.append(frame)
        truth.append(np.asarray(points, np.float64) @ matrix[:, :2].T + matrix[:, 2])
    return out, np.array(truth)


def _iod(truth):
    return np.linalg.norm(truth[:, 0] - truth[:, 1], axis=1)


def jitter(points, truth):
    """Mean |frame-to-frame motion - true motion| over the inter-ocular distance."""
    excess = np.linalg.norm(np.diff(points - truth, axis=0), axis=2).mean(axis=1)
    return float((excess / _iod(truth)[1:]).mean())


def lag(points, truth, most=5.0, step=0.1):
    """Frames by which `points` trail `truth` (0 to `most`, in steps of `step`)."""
    times = np.arange(len(truth), dtype=np.float64)
    best, best_cost = 0.0, np.inf
    for delay in np.arange(0.0, most + step / 2, step):
        late = times - delay
        keep = late >= 0
        shifted = np.stack([np.stack([np.interp(late[keep], times, truth[:, k, a]) for a in range(2)], axis=1)
                            for k in range(truth.shape[1])], axis=1)
        cost = float((np.linalg.norm(points[keep] - shifted, axis=2).mean(axis=1) / _iod(truth)[keep]).mean())
        if cost < best_cost - 1e-12:
            best, best_cost = float(delay), cost
    return best


def error(points, truth):
    return float((np.linalg.norm(points - truth, axis=2).mean(axis=1) / _iod(truth)).mean())
