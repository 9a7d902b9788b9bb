package ecg

import "strconv"

// Feature layout: every featureStride-th window sample, then RR features and ratios.
const (
	featureStride = 3
	numWaveFeat   = (WindowLen + featureStride - 1) / featureStride
	// NumFeatures is the length of the feature vector the classifier sees.
	NumFeatures = numWaveFeat + 9
)

// FeatureNames returns the names of the features, in order.
func FeatureNames() []string {
	out := make([]string, 0, NumFeatures)
	for i := 0; i < WindowLen; i += featureStride {
		out = append(out, "w"+strconv.Itoa(i))
	}
	return append(out, "rr_pre", "rr_post", "rr_local", "rr_avg", "pre/local", "post/local", "pre/avg", "post/pre", "width")
}

// Features writes the feature vector of a beat window and its RR features into f, which must
// have length NumFeatures. Unknown RR values (zero) give zero ratios.
func Features(f []float32, w *[WindowLen]float32, rr RRFeatures) {
	j := 0
	for i := 0; i < WindowLen; i += featureStride {
		f[j] = w[i]
		j++
	}
	width := 0
	for i := WindowLen - 1; i >= 0; i-- {
		if w[i] != 0 {
			width = i + 1
			break
		}
	}
	f[j+0] = float32(rr.Pre)
	f[j+1] = float32(rr.Post)
	f[j+2] = float32(rr.Local)
	f[j+3] = float32(rr.Average)
	f[j+4] = div32(rr.Pre, rr.Local)
	f[j+5] = div32(rr.Post, rr.Local)
	f[j+6] = div32(rr.Pre, rr.Average)
	f[j+7] = div32(rr.Post, rr.Pre)
	f[j+8] = float32(width) / WindowFs
}

func div32(a, b float64) float32 {
	if b <= 0 || a <= 0 {
		return 0
	}
	return float32(a / b)
}
