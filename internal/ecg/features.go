package ecg

import "strconv"

// Feature layout: every featureStride-th window sample, RR-interval ratios and the window
// width (the 70 features of model files of version 1), then the RR intervals relative to the
// patient's median rhythm and the morphology relative to the patient's dominant beat.
const (
	featureStride = 3
	numWaveFeat   = (WindowLen + featureStride - 1) / featureStride
	// numV1Features is the length of the feature vector of version 1 model files, a prefix of
	// the current one.
	numV1Features = numWaveFeat + 7
	numRRFeat     = 3
	// numV2Features is the length of the feature vector of version 2 model files (one
	// morphology feature fewer than today), a prefix of the current one.
	numV2Features = numV1Features + numRRFeat + NumMorph - 1
	// numNormalFeat counts the features against the patient's normal rhythm (version 3).
	numNormalFeat = 5
	// numV3Features is the length of the feature vector of version 3 model files.
	numV3Features = numV2Features + 1 + numNormalFeat
	// numV4Feat counts the features new in version 4: the QRS width against the template's,
	// the compensatory pause and the previous beat's prematurity.
	numV4Feat = 3
	// numV4Features is the length of the feature vector of model files of versions 4 to 6.
	numV4Features = numV3Features + numV4Feat
	// numV7Feat counts the features new in version 7 (the first numV7Extra of
	// MorphFeatures.Extra).
	numV7Feat = numV7Extra
	// numV7Features is the length of the feature vector of version 7 files.
	numV7Features = numV4Features + numV7Feat
	// NumFeatures is the length of the feature vector the classifier sees.
	NumFeatures = numV7Features + numExtraMorph - numV7Extra
)

// FeatureNames returns the names of the features, in order.
func FeatureNames() []string {
	out := make([]string, 0, NumFeatures)
	for i := 0; i < WindowLen; i += featureStride {
		out = append(out, "w"+strconv.Itoa(i))
	}
	out = append(out, "pre/local", "post/local", "pre/avg", "post/avg", "local/avg", "post/pre", "width",
		"pre/median", "post/median", "prev/local")
	out = append(out, morphNames()...)
	out = append(out, "pre/normal", "post/normal", "local/normal", "prematurity_z", "spread")
	out = append(out, "width/template", "(pre+post)/normal", "prev/normal")
	return append(out, extraMorphNames[:]...)
}

// Features writes the feature vector of a beat window and its RR features into f, which must
// have length NumFeatures. Unknown RR values (zero) give zero ratios; unknown morphology
// gives neutralMorph.
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
	// Only ratios: absolute RR intervals vary between patients and made the model generalize
	// worse to unseen patients in the leave-records-out cross-validation (docs/ecg.md).
	f[j+0] = div32(rr.Pre, rr.Local)
	f[j+1] = div32(rr.Post, rr.Local)
	f[j+2] = div32(rr.Pre, rr.Average)
	f[j+3] = div32(rr.Post, rr.Average)
	f[j+4] = div32(rr.Local, rr.Average)
	f[j+5] = div32(rr.Post, rr.Pre)
	f[j+6] = float32(width) / WindowFs
	f[j+7] = div32(rr.Pre, rr.Median)
	f[j+8] = div32(rr.Post, rr.Median)
	f[j+9] = div32(rr.Prev, rr.Local)
	j += 7 + numRRFeat
	if rr.Morph.Known {
		copy(f[j:], rr.Morph.Values[:])
	} else {
		copy(f[j:], neutralMorph[:])
	}
	j += NumMorph
	// Against the patient's normal rhythm: prematurity, the pause after, the local rhythm (low
	// in a run of ectopic beats), and the prematurity in units of the rhythm's own spread, so
	// that an irregular rhythm (atrial fibrillation) does not make every short interval look
	// premature.
	f[j+0] = div32(rr.Pre, rr.Normal)
	f[j+1] = div32(rr.Post, rr.Normal)
	f[j+2] = div32(rr.Local, rr.Normal)
	f[j+3], f[j+4] = 0, 0
	if rr.Pre > 0 && rr.Normal > 0 {
		f[j+3] = float32((rr.Pre/rr.Normal - 1) / max(rr.Spread, minSpread))
		f[j+4] = float32(rr.Spread)
	}
	j += numNormalFeat
	// The QRS width against the template's (ventricular beats are wide, aberrated
	// supraventricular ones less so), the compensatory pause (a ventricular premature beat
	// usually leaves the sinus rhythm undisturbed, so pre + post is two normal intervals; an
	// atrial one resets it, less) and the previous beat's prematurity (runs of ectopic beats).
	f[j+0] = 1
	if rr.Morph.Known {
		f[j+0] = rr.Morph.WidthRatio
	}
	f[j+1] = div32(rr.Pre+rr.Post, rr.Normal)
	f[j+2] = div32(rr.Prev, rr.Normal)
	j += numV4Feat
	if rr.Morph.Known {
		copy(f[j:], rr.Morph.Extra[:])
	} else {
		copy(f[j:], neutralExtra[:])
	}
}

// neutralMorph stands for unknown morphology features (no template yet, or a beat without its
// raw signal): the values of a beat identical to its patient's dominant beat, so that such
// beats are classified by their RR intervals and window shape.
var neutralMorph = func() (v [NumMorph]float32) {
	v[0], v[1], v[2] = 1, 1, 1 // correlations
	v[4], v[5] = 1, 1          // amplitude and variation ratios; distance and differences 0
	v[NumMorph-1] = 1          // P-wave amplitude ratio
	return v
}()

func div32(a, b float64) float32 {
	if b <= 0 || a <= 0 {
		return 0
	}
	return float32(a / b)
}
